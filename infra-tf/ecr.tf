# One repository per image; tags are immutable (a tag names one build),
# images are scanned on push and encrypted with a key of this stack.

locals {
  images = toset(["lagrate", "trade-tx-consumer", "trade-tx-producer"])
}

resource "aws_kms_key" "ecr" {
  description         = "${var.name}: ECR image encryption"
  enable_key_rotation = true
  policy              = data.aws_iam_policy_document.ecr_key.json
}

data "aws_iam_policy_document" "ecr_key" {
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
}

resource "aws_ecr_repository" "image" {
  for_each = local.images

  name                 = "${var.name}/${each.key}"
  image_tag_mutability = "IMMUTABLE"
  force_delete         = var.ecr_force_delete

  image_scanning_configuration {
    scan_on_push = true
  }

  encryption_configuration {
    encryption_type = "KMS"
    kms_key         = aws_kms_key.ecr.arn
  }
}

resource "aws_ecr_lifecycle_policy" "image" {
  for_each = aws_ecr_repository.image

  repository = each.value.name
  policy = jsonencode({
    rules = [{
      rulePriority = 1
      description  = "keep the newest ${var.ecr_keep_images} images"
      selection = {
        tagStatus   = "any"
        countType   = "imageCountMoreThan"
        countNumber = var.ecr_keep_images
      }
      action = { type = "expire" }
    }]
  })
}
