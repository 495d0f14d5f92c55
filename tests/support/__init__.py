"""Helpers the tests share: test doubles, small real models, real servers on free ports, the
solver service on a scripted policy, the `rstar` command, jailed processes and the project's
data. No test module imports another test module; what two of them need lives here."""
