# Replaces the `terraform` block Chalice writes into chalice.tf.json (Terraform < 1.4,
# AWS provider < 5, the null provider for a deprecated data source). Kept in HCL on
# purpose: checkov's terraform_json parser cannot read this block in JSON.
#
# Minimum versions only: this directory is meant to be used as a module, and the
# root configuration that calls it pins exact versions in its lock file.
#
# AWS provider >= 5.76.0: the first release whose aws_lambda_function accepts
# runtime = "python3.13" (the provider's CHANGELOG, 5.76.0 of November 2024, where
# the Python 3.13 and Node.js 22 runtimes are documented, #40277; 5.75.1 rejects it
# at plan time, #40107). Every other argument the export uses is older than that.
# `make validate` runs the export with the provider in the mirror.
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.76.0"
    }
  }
}
