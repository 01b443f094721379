# Replaces the `terraform` block Chalice writes into chalice.tf.json (Terraform < 1.4,
# AWS provider < 5, the null provider for a deprecated data source). Kept in HCL on
# purpose: checkov's terraform_json parser cannot read this block in JSON.
#
# Minimum versions only: this directory is meant to be used as a module, and the
# root configuration that calls it pins exact versions in its lock file.
terraform {
  required_version = ">= 1.5"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.0"
    }
  }
}
