"""Type tokens (pulumi-gcp 10) the rules look at, named once."""

# ruff: noqa: S105 - "secret" here names Secret Manager types, not credentials

from __future__ import annotations

SQL_INSTANCE = "gcp:sql/databaseInstance:DatabaseInstance"
SQL_USER = "gcp:sql/user:User"
RUN_SERVICE = "gcp:cloudrunv2/service:Service"
RUN_IAM_MEMBER = "gcp:cloudrunv2/serviceIamMember:ServiceIamMember"
RUN_IAM_BINDING = "gcp:cloudrunv2/serviceIamBinding:ServiceIamBinding"
REDIS_INSTANCE = "gcp:redis/instance:Instance"
SECRET = "gcp:secretmanager/secret:Secret"
SECRET_IAM_MEMBER = "gcp:secretmanager/secretIamMember:SecretIamMember"
SECRET_IAM_BINDING = "gcp:secretmanager/secretIamBinding:SecretIamBinding"
PROJECT_IAM_MEMBER = "gcp:projects/iAMMember:IAMMember"
PROJECT_IAM_BINDING = "gcp:projects/iAMBinding:IAMBinding"
SA_ACCOUNT = "gcp:serviceaccount/account:Account"
SA_KEY = "gcp:serviceaccount/key:Key"
SA_IAM_MEMBER = "gcp:serviceaccount/iAMMember:IAMMember"
SA_IAM_BINDING = "gcp:serviceaccount/iAMBinding:IAMBinding"
WIF_PROVIDER = "gcp:iam/workloadIdentityPoolProvider:WorkloadIdentityPoolProvider"
KMS_KEY = "gcp:kms/cryptoKey:CryptoKey"
COMPUTE_INSTANCE = "gcp:compute/instance:Instance"
FIREWALL = "gcp:compute/firewall:Firewall"
NETWORK = "gcp:compute/network:Network"
SUBNETWORK = "gcp:compute/subnetwork:Subnetwork"

IAM_MEMBERS = (PROJECT_IAM_MEMBER, SA_IAM_MEMBER, SECRET_IAM_MEMBER, RUN_IAM_MEMBER)
IAM_BINDINGS = (PROJECT_IAM_BINDING, SA_IAM_BINDING, SECRET_IAM_BINDING, RUN_IAM_BINDING)
