"""The local stack: the unmodified app behind an API Gateway look-alike. Never deployed.

``python -m local_gateway --help`` says what it starts. Nothing in ``app.py``
or ``chalicelib`` imports this package.
"""
