"""The Terraform export and deploy helpers (never deployed; see infra/build.py)."""
