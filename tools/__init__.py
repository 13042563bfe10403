"""Test and evidence tools run from the repository root, never installed with the package.

``tools.driver`` drives the tool in-process against the sandbox (the end-to-end tests and the soak use it);
``python -m tools.soak`` is the fault soak and ``python -m tools.bench`` measures a run's requests at scale.
They build on ``amplify_billing.sandbox`` (the emulators, the scenario), which does ship: the demo needs it.
"""
