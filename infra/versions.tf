# Replaces the `terraform` block Chalice writes into chalice.tf.json (Terraform < 1.4,
# AWS provider < 5, the null provider for a deprecated data source). Kept in HCL on
# purpose: checkov's terraform_json parser cannot read this block in JSON.
#
# Minimum versions only: this directory is meant to be used as a module, and the
# root configuration that calls it pins exact versions in its lock file.
#
# AWS provider >= 5.11.0: the first release whose aws_lambda_function accepts
# runtime = "python3.11" (the provider's CHANGELOG, 5.11.0 of August 3, 2023:
# "resource/aws_lambda_function: Add support for `python3.11` `runtime` value",
# #32729); 5.10 rejects it at plan time. Every other argument the export uses is
# older than that. `make validate` runs the export with the provider in the mirror.
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.11.0"
    }
  }
}
