# One customer-managed key for the stack's data at rest: MSK broker storage,
# the broker logs in CloudWatch and the ECR images. Rotated yearly.

resource "aws_kms_key" "stack" {
  description         = "${var.name}: MSK storage, broker logs and ECR images"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.stack_key.json
}

resource "aws_kms_alias" "stack" {
  name          = "alias/${var.name}"
  target_key_id = aws_kms_key.stack.key_id
}

data "aws_iam_policy_document" "stack_key" {
  # In a key policy "*" means this key, and the account root administering it
  # is AWS's default key policy (without it the key becomes unmanageable);
  # MSK and ECR use the key through grants made with their callers' IAM rights.
  #checkov:skip=CKV_AWS_109:key policy: resource "*" is this key only
  #checkov:skip=CKV_AWS_111:key policy: resource "*" is this key only
  #checkov:skip=CKV_AWS_356:key policy: resource "*" is this key only
  statement {
    sid       = "AccountAdministers"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:aws:iam::${data.aws_caller_identity.current.account_id}:root"]
    }
  }
  # CloudWatch Logs is a service principal: it needs its own statement, bound
  # to this stack's broker log group.
  statement {
    sid       = "CloudWatchLogsEncryptBrokerLogs"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${var.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:aws:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:/aws/msk/${var.name}"]
    }
  }
}
