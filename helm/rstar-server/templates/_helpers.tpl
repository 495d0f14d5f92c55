{{/*
Names and labels, after the conventions of `helm create`.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "rstar.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The full name prefix of every resource: fullnameOverride, else <release>-<name> (just <release>
when it already contains the name). Truncated so that "-policy" etc. still fit in 63 characters.
*/}}
{{- define "rstar.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 52 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 52 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* chart-version, for the helm.sh/chart label. */}}
{{- define "rstar.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Labels of every resource. Call with (dict "root" $ "component" "server"). */}}
{{- define "rstar.labels" -}}
helm.sh/chart: {{ include "rstar.chart" .root }}
{{ include "rstar.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
app.kubernetes.io/part-of: {{ include "rstar.name" .root }}
{{- end }}

{{/* Selector labels. Call with (dict "root" $ "component" "server"). */}}
{{- define "rstar.selectorLabels" -}}
app.kubernetes.io/name: {{ include "rstar.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* The ServiceAccount the pods run as. */}}
{{- define "rstar.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "rstar.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The search server's image reference. */}}
{{- define "rstar.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The vLLM server image reference. */}}
{{- define "rstar.vllmImage" -}}
{{- printf "%s:%s" .Values.models.remote.image.repository .Values.models.remote.image.tag }}
{{- end }}

{{/* "true" when models run in vLLM servers of their own. */}}
{{- define "rstar.remote" -}}
{{- if eq .Values.models.mode "remote" }}true{{ end }}
{{- end }}

{{/* "true" when the chart deploys the policy's vLLM server. */}}
{{- define "rstar.deployPolicy" -}}
{{- if and (include "rstar.remote" .) .Values.models.remote.policy.deploy }}true{{ end }}
{{- end }}

{{/* "true" when the chart deploys the PPM's vLLM pooling server. */}}
{{- define "rstar.deployPpm" -}}
{{- if and (include "rstar.remote" .) .Values.models.ppm.model .Values.models.remote.ppm.deploy }}true{{ end }}
{{- end }}

{{/* RSTAR_POLICY_URL in remote mode: the chart's Service, or models.remote.policy.url. */}}
{{- define "rstar.policyUrl" -}}
{{- if .Values.models.remote.policy.deploy }}
{{- printf "http://%s-policy:8000" (include "rstar.fullname" .) }}
{{- else }}
{{- required "models.remote.policy.url is required when models.remote.policy.deploy is false" .Values.models.remote.policy.url }}
{{- end }}
{{- end }}

{{/* RSTAR_PPM_URL in remote mode. */}}
{{- define "rstar.ppmUrl" -}}
{{- if .Values.models.remote.ppm.deploy }}
{{- printf "http://%s-ppm:8000" (include "rstar.fullname" .) }}
{{- else }}
{{- required "models.remote.ppm.url is required when models.remote.ppm.deploy is false" .Values.models.remote.ppm.url }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding HF_TOKEN; empty when there is none. */}}
{{- define "rstar.hfTokenSecret" -}}
{{- if .Values.modelStorage.hfToken.existingSecret }}
{{- .Values.modelStorage.hfToken.existingSecret }}
{{- else if .Values.modelStorage.hfToken.value }}
{{- printf "%s-hf-token" (include "rstar.fullname" .) }}
{{- end }}
{{- end }}

{{/* Name of the Secret holding the vLLM servers' API key; empty when there is none. */}}
{{- define "rstar.apiKeySecret" -}}
{{- if .Values.models.remote.apiKey.existingSecret }}
{{- .Values.models.remote.apiKey.existingSecret }}
{{- else if .Values.models.remote.apiKey.value }}
{{- printf "%s-api-key" (include "rstar.fullname" .) }}
{{- end }}
{{- end }}

{{/* Name of the PVC with the models; empty when persistence is off. */}}
{{- define "rstar.modelsClaim" -}}
{{- if .Values.modelStorage.persistence.enabled }}
{{- default (printf "%s-models" (include "rstar.fullname" .)) .Values.modelStorage.persistence.existingClaim }}
{{- end }}
{{- end }}

{{/* The pod volumes for models (+ caches when the model volume is read-only). */}}
{{- define "rstar.modelVolumes" -}}
- name: models
{{- if include "rstar.modelsClaim" . }}
  persistentVolumeClaim:
    claimName: {{ include "rstar.modelsClaim" . }}
    readOnly: {{ .Values.modelStorage.persistence.readOnly }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- if .Values.modelStorage.persistence.readOnly }}
- name: caches
  emptyDir: {}
{{- end }}
{{- end }}

{{/* The container volumeMounts for models (+ caches). */}}
{{- define "rstar.modelVolumeMounts" -}}
- name: models
  mountPath: {{ .Values.modelStorage.mountPath }}
  readOnly: {{ if and (include "rstar.modelsClaim" .) .Values.modelStorage.persistence.readOnly }}true{{ else }}false{{ end }}
{{- if .Values.modelStorage.persistence.readOnly }}
- name: caches
  mountPath: /caches
{{- end }}
{{- end }}

{{/* Where hub downloads and converted models go: the model volume, or /caches if read-only. */}}
{{- define "rstar.cacheRoot" -}}
{{- if .Values.modelStorage.persistence.readOnly }}/caches{{ else }}{{ .Values.modelStorage.mountPath }}{{ end }}
{{- end }}

{{/* Environment of every model-loading container: hub cache, token, offline mode. */}}
{{- define "rstar.modelEnv" -}}
- name: HF_HOME
  value: {{ printf "%s/hf" (include "rstar.cacheRoot" .) | quote }}
{{- include "rstar.hubEnv" . }}
{{- end }}

{{/*
The hub's token and offline mode (HF_HOME is the caller's: it depends on the mount). Like every
helper here that may render nothing, its output starts with a newline: `trim` it at the start
of a list.
*/}}
{{- define "rstar.hubEnv" -}}
{{- with include "rstar.hfTokenSecret" . }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.modelStorage.hfToken.secretKey }}
{{- end }}
{{- if .Values.modelStorage.offline }}
- name: HF_HUB_OFFLINE
  value: "1"
{{- end }}
{{- end }}

{{/* RSTAR_REMOTE_API_KEY for a container calling the vLLM servers; nothing without a key. */}}
{{- define "rstar.remoteApiKeyEnv" -}}
{{- with include "rstar.apiKeySecret" . }}
- name: RSTAR_REMOTE_API_KEY
  valueFrom:
    secretKeyRef:
      name: {{ . }}
      key: {{ $.Values.models.remote.apiKey.secretKey }}
{{- end }}
{{- end }}

{{/*
The sandbox's settings, for every container that runs step code (the server, a round's
generation). Call with (dict "root" $ "workers" N).
*/}}
{{- define "rstar.sandboxEnv" -}}
{{- $s := .root.Values.sandbox -}}
- name: RSTAR_SANDBOX
  value: {{ $s.backend | quote }}
- name: RSTAR_SANDBOX_WORKERS
  value: {{ .workers | quote }}
- name: RSTAR_SANDBOX_TIMEOUT_S
  value: {{ $s.timeoutS | quote }}
- name: RSTAR_SANDBOX_MEMORY_MB
  value: {{ $s.memoryMB | quote }}
- name: RSTAR_SANDBOX_SECCOMP
  value: {{ $s.seccomp | quote }}
- name: RSTAR_SANDBOX_CGROUPS
  value: {{ $s.cgroups | quote }}
{{- with $s.jailMemoryMB }}
- name: RSTAR_SANDBOX_JAIL_MEMORY_MB
  value: {{ . | quote }}
{{- end }}
{{- end }}

{{/*
The securityContext of a container that runs step code: what nsjail needs to build its jails
(sandbox.securityContext), or none of it for the unjailed local backend.
*/}}
{{- define "rstar.sandboxSecurityContext" -}}
{{- if eq .Values.sandbox.backend "nsjail" }}
{{- toYaml .Values.sandbox.securityContext }}
{{- else -}}
# RSTAR_SANDBOX=local needs no privileges (and isolates nothing)
{{ include "rstar.restrictedSecurityContext" . }}
{{- end }}
{{- end }}

{{/* A container that needs no privileges: the image's non-root user, nothing added. */}}
{{- define "rstar.restrictedSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
allowPrivilegeEscalation: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/* prometheus.io scrape annotations for a pod serving /metrics on `port`. */}}
{{- define "rstar.scrapeAnnotations" -}}
{{- if .root.Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end }}

{{/*
A self-evolution round's Job: <fullname>-round<N>-<part>. The round's number is in the name, so
that the next round's Jobs are new Jobs (a Job's pod template cannot change) and the finished
round's stay until deleted. Call with (dict "root" $ "part" "generate"|"train").
*/}}
{{- define "rstar.roundJobName" -}}
{{- $prefix := include "rstar.fullname" .root | trunc 40 | trimSuffix "-" }}
{{- printf "%s-round%d-%s" $prefix (int .root.Values.round.number) .part }}
{{- end }}

{{/* The round's directory: round.out, or <modelStorage.mountPath>/rounds/<number>. */}}
{{- define "rstar.roundOut" -}}
{{- $default := printf "%s/rounds/%d" (.Values.modelStorage.mountPath | trimSuffix "/") (int .Values.round.number) }}
{{- default $default .Values.round.out }}
{{- end }}

{{/* A round Job's image: its own repository and tag, else the chart's. Call with (dict "root" $ "image" VALUES). */}}
{{- define "rstar.roundImage" -}}
{{- $repo := default .root.Values.image.repository .image.repository }}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) .image.tag }}
{{- printf "%s:%s" $repo $tag }}
{{- end }}

{{/*
What a round can run on, checked before anything renders: its generation searches against the
vLLM servers (remote mode), and its Jobs share one volume with them.
*/}}
{{- define "rstar.roundChecks" -}}
{{- if ne .Values.models.mode "remote" }}
{{- fail "round.enabled: the round searches against this release's vLLM servers; set models.mode=remote (the training Job takes GPUs of its own)" }}
{{- end }}
{{- $p := .Values.modelStorage.persistence }}
{{- if not $p.enabled }}
{{- fail "round.enabled: the round's Jobs and the vLLM servers share the model volume; set modelStorage.persistence.enabled=true (a ReadWriteMany claim: existingClaim, or accessModes [ReadWriteMany])" }}
{{- end }}
{{- if and (not $p.existingClaim) (not (has "ReadWriteMany" $p.accessModes)) }}
{{- fail "round.enabled: the generation pods, the training pod and the vLLM servers write and read the model volume from several nodes; set modelStorage.persistence.accessModes to [ReadWriteMany] (or existingClaim to such a claim)" }}
{{- end }}
{{- $_ := required "round.problems is required: the training problems' JSONL file on the model volume, e.g. /models/data/gsm8k_train.jsonl" .Values.round.problems }}
{{- end }}

{{/*
The `train_round` arguments both of a round's Jobs pass alike: the merge checks that the shards
ran the round's settings, so these are written once. As the container's args, after the image's
entrypoint.
*/}}
{{- define "rstar.roundArgs" -}}
{{- $r := .Values.round -}}
- python3
- -m
- server.train_round
- --round
- {{ $r.number | quote }}
- --problems
- {{ $r.problems | quote }}
- --offset
- {{ $r.offset | quote }}
{{- with $r.limit }}
- --limit
- {{ . | quote }}
{{- end }}
- --out
- {{ include "rstar.roundOut" . | quote }}
# the previous round's models: what the vLLM servers load, named as they serve them
- --policy
- {{ .Values.models.policy.model | quote }}
- --engine
- remote
- --policy-url
- {{ include "rstar.policyUrl" . | quote }}
{{- with .Values.models.ppm.model }}
- --ppm
- {{ . | quote }}
- --ppm-engine
- remote
- --ppm-url
- {{ include "rstar.ppmUrl" $ | quote }}
{{- end }}
{{- with .Values.models.policy.promptStyle }}
- --prompt-style
- {{ . | quote }}
{{- end }}
- --max-model-len
- {{ .Values.models.maxModelLen | quote }}
{{- with $r.baseModel }}
# only training reads it, but it is part of the round's identity, which a shard started after
# the training Job wrote the manifest is checked against
- --base-model
- {{ . | quote }}
{{- end }}
- --rollouts
- {{ $r.rollouts | quote }}
{{- range $r.extraArgs }}
- {{ . | quote }}
{{- end }}
{{- end }}

{{/* The model volume as a round's Jobs mount it: read-write, at modelStorage.mountPath. */}}
{{- define "rstar.roundVolume" -}}
- name: models
  persistentVolumeClaim:
    claimName: {{ include "rstar.modelsClaim" . }}
{{- end }}

{{- define "rstar.roundVolumeMount" -}}
- name: models
  mountPath: {{ .Values.modelStorage.mountPath }}
{{- end }}
