"""IAM, service accounts, Secret Manager access, Workload Identity Federation, KMS."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

from bulwark.policy.rules.base import RULES, Finding, NotApplicable, Resource
from bulwark.policy.rules.types import (
    IAM_BINDINGS,
    IAM_MEMBERS,
    KMS_KEY,
    PROJECT_IAM_BINDING,
    PROJECT_IAM_MEMBER,
    SA_IAM_BINDING,
    SA_IAM_MEMBER,
    SA_KEY,
    SECRET_IAM_BINDING,
    SECRET_IAM_MEMBER,
    WIF_PROVIDER,
)

BASIC_ROLES = ("roles/owner", "roles/editor", "roles/viewer")
PUBLIC_MEMBERS = ("allUsers", "allAuthenticatedUsers")
IMPERSONATION_ROLES = ("roles/iam.serviceAccountUser", "roles/iam.serviceAccountTokenCreator")
SECRET_READ_ROLES = ("roles/secretmanager.secretAccessor",)
KMS_MAX_ROTATION_SECONDS = 90 * 24 * 3600
# Project roles from which their holder can make itself owner: change the project's IAM policy,
# change IAM on (or mint keys for) any service account, define roles, or impersonate through
# federation. (Basic roles and project-wide actAs/token minting have rules of their own.)
ESCALATING_ROLES = frozenset({
    "roles/resourcemanager.projectIamAdmin", "roles/iam.securityAdmin",
    "roles/iam.serviceAccountAdmin", "roles/iam.serviceAccountKeyAdmin",
    "roles/iam.workloadIdentityUser", "roles/iam.roleAdmin",
    "roles/resourcemanager.organizationAdmin", "roles/resourcemanager.folderIamAdmin",
    "roles/deploymentmanager.editor",
})  # fmt: skip
# What a conditioned projectIamAdmin must never be able to hand out.
NEVER_GRANTED = ESCALATING_ROLES | set(BASIC_ROLES) | set(IMPERSONATION_ROLES)
# A grant of these is safe when an IAM condition lets it grant only listed, harmless roles.
GRANTING_ROLES = frozenset({"roles/resourcemanager.projectIamAdmin", "roles/iam.securityAdmin"})
GRANT_LIMIT = re.compile(
    r"^api\.getAttribute\('iam\.googleapis\.com/modifiedGrantsByRole', \[\]\)"
    r"\.hasOnly\(\[([^\]]*)\]\)$"
)
AUTOMATION_MEMBER = re.compile(r"^(serviceAccount:|principal://|principalSet://)")


REPOSITORY_PIN = re.compile(r"assertion\.repository\s*==\s*'[^']+/[^']+'")
REPOSITORY_ID_PIN = re.compile(r"assertion\.repository_id\s*==\s*'\d+'")
REF_PIN = re.compile(r"assertion\.ref\s*==\s*'refs/heads/[^']+'")
PULL_REQUEST_PIN = re.compile(r"assertion\.event_name\s*==\s*'pull_request'")
BASE_REF_PIN = re.compile(r"assertion\.base_ref\s*==\s*'[^']+'")
# What an identity that pull requests can reach may hold: reading, never changing or decrypting.
READ_ONLY_ROLE = re.compile(r"^roles/([a-z]+\.)?[a-zA-Z]*[vV]iewer$|^roles/iam\.securityReviewer$")


def conjuncts(condition: str) -> list[str]:
    """The top-level `&&` parts of a CEL condition: the clauses every admitted token meets.
    A top-level `||` guarantees none of them, so the answer is then [] (nothing pinned)."""
    text = condition.strip()
    while text.startswith("(") and _closing(text, 0) == len(text) - 1:
        text = text[1:-1].strip()
    parts: list[str] = []
    depth, start, quote, i = 0, 0, "", 0
    while i < len(text):
        char = text[i]
        if quote:
            quote = "" if char == quote and text[i - 1] != "\\" else quote
        elif char in "'\"":
            quote = char
        elif char in "([":
            depth += 1
        elif char in ")]":
            depth -= 1
        elif depth == 0 and text.startswith("||", i):
            return []
        elif depth == 0 and text.startswith("&&", i):
            parts.append(text[start:i].strip())
            start, i = i + 2, i + 1
        i += 1
    return [*parts, text[start:].strip()]


def _closing(text: str, at: int) -> int:
    """Index of the parenthesis that closes the one at `at` (quotes aside), or -1."""
    depth, quote = 0, ""
    for i in range(at, len(text)):
        char = text[i]
        if quote:
            quote = "" if char == quote else quote
        elif char in "'\"":
            quote = char
        elif char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
            if depth == 0:
                return i
    return -1


def _pinned(res: Resource, *patterns: re.Pattern[str]) -> bool:
    """Whether every pattern is a whole top-level clause of the provider's condition."""
    parts = conjuncts(str(res.get("attributeCondition") or ""))
    return all(any(p.fullmatch(part) for part in parts) for p in patterns)


def admits_pull_requests(res: Resource) -> bool:
    """A provider for pull requests' previews: pinned to their base branch, not to a ref."""
    return not _pinned(res, REF_PIN) and _pinned(res, PULL_REQUEST_PIN, BASE_REF_PIN)


def _members(res: Resource) -> list[str]:
    found = [res.get("member"), *res.items("members")]
    return [m for m in found if isinstance(m, str)]


@RULES.resource(
    "iam-no-basic-roles",
    types=(PROJECT_IAM_MEMBER, PROJECT_IAM_BINDING),
    title="No basic roles (owner, editor, viewer) are granted",
    severity="high",
    family="iam",
    rationale="Basic roles span thousands of permissions across every service; least "
    "privilege needs predefined roles.",
    remediation="Grant the predefined roles the member needs (e.g. roles/run.admin) instead.",
    checkov="CKV_GCP_117",
)
def iam_no_basic_roles(res: Resource) -> Sequence[str]:
    role = res.get("role")
    if role in BASIC_ROLES:
        return [f"role {role} is a basic role: grant predefined roles instead"]
    return []


@RULES.resource(
    "iam-no-public-members",
    types=IAM_MEMBERS + IAM_BINDINGS,
    title="No IAM grant to allUsers or allAuthenticatedUsers",
    severity="critical",
    family="iam",
    rationale="These members are everyone on the internet, with or without a Google account.",
    remediation="Grant the role to named users, groups or service accounts.",
    checkov="CKV_GCP_102",
)
def iam_no_public_members(res: Resource) -> Sequence[str]:
    return [
        f"{member} is granted {res.get('role')}: grant named members instead"
        for member in _members(res)
        if member in PUBLIC_MEMBERS
    ]


@RULES.resource(
    "iam-no-user-managed-sa-keys",
    types=SA_KEY,
    title="No user-managed service account keys",
    severity="high",
    family="iam",
    rationale="A downloaded key is a long-lived credential that leaks through laptops, CI logs "
    "and repositories; workload identity and impersonation need none.",
    remediation="Remove the gcp.serviceaccount.Key and use Workload Identity Federation or "
    "service account impersonation.",
    cis="1.4",
)
def iam_no_user_managed_sa_keys(res: Resource) -> Sequence[str]:
    return [
        f"service account key {res.name} is user-managed: remove it and use Workload "
        "Identity Federation"
    ]


@RULES.resource(
    "iam-no-project-impersonation",
    types=(PROJECT_IAM_MEMBER, PROJECT_IAM_BINDING),
    title="Service Account User and Token Creator are granted per account, not per project",
    severity="high",
    family="iam",
    rationale="At project level these roles let the member act as every service account in "
    "the project, including the most privileged.",
    remediation="Grant the role on the one service account (gcp.serviceaccount.IAMMember).",
    cis="1.6",
    checkov="CKV_GCP_41",
)
def iam_no_project_impersonation(res: Resource) -> Sequence[str]:
    role = res.get("role")
    if role in IMPERSONATION_ROLES:
        return [f"{role} is granted on the whole project: grant it on the one service account"]
    return []


@RULES.resource(
    "secret-access-per-secret",
    types=(PROJECT_IAM_MEMBER, PROJECT_IAM_BINDING),
    title="Secret access is granted per secret, not per project",
    severity="high",
    family="secrets",
    rationale="A project-level accessor reads every secret, present and future. (The deployer's "
    "secretmanager.admin, which creates the secrets, is a deploy role and out of scope here.)",
    remediation="Grant roles/secretmanager.secretAccessor on each secret the member needs "
    "(gcp.secretmanager.SecretIamMember).",
)
def secret_access_per_secret(res: Resource) -> Sequence[str]:
    role = str(res.get("role") or "")
    if role in SECRET_READ_ROLES:
        return [f"{role} is granted on the whole project: grant it per secret instead"]
    return []


@RULES.resource(
    "secret-accessor-read-only",
    types=(SECRET_IAM_MEMBER, SECRET_IAM_BINDING),
    title="Secret grants are read-only",
    severity="medium",
    family="secrets",
    rationale="A workload reads its secrets; changing or deleting them is the deployer's job.",
    remediation="Grant roles/secretmanager.secretAccessor only.",
)
def secret_accessor_read_only(res: Resource) -> Sequence[str]:
    role = res.get("role")
    if role in SECRET_READ_ROLES:
        return []
    return [f"role {role} on the secret is more than reading: grant secretAccessor instead"]


@RULES.resource(
    "wif-repository-pinned",
    types=WIF_PROVIDER,
    title="Workload identity provider admits one repository",
    severity="critical",
    family="ci",
    rationale="Without an attribute condition any GitHub repository (anyone's) can exchange "
    "its OIDC token for this project's credentials.",
    remediation="Set attributeCondition to `assertion.repository == 'OWNER/NAME' && ...`.",
    checkov="CKV_GCP_125",
)
def wif_repository_pinned(res: Resource) -> Sequence[str]:
    if _pinned(res, REPOSITORY_PIN):
        return []
    return [
        "attributeCondition does not pin assertion.repository: add "
        "`assertion.repository == 'OWNER/NAME'`"
    ]


@RULES.resource(
    "wif-ref-pinned",
    types=WIF_PROVIDER,
    title="Workload identity provider admits one branch",
    severity="high",
    family="ci",
    rationale="Any branch (or a pull request's workflow) could deploy otherwise; deploys come "
    "from the protected branch only. A provider for pull requests' previews pins their base "
    "branch instead, and wif-pull-requests-read-only holds what it reaches to reading.",
    remediation="Add `&& assertion.ref == 'refs/heads/main'` to attributeCondition (for a "
    "preview provider: `&& assertion.event_name == 'pull_request' && assertion.base_ref == "
    "'main'`); a top-level `||` pins nothing.",
    checkov="CKV_GCP_118",
)
def wif_ref_pinned(res: Resource) -> Sequence[str]:
    if _pinned(res, REF_PIN) or admits_pull_requests(res):
        return []
    return [
        "attributeCondition does not pin assertion.ref in every case: add "
        "`&& assertion.ref == 'refs/heads/main'` (no top-level `||`)"
    ]


@RULES.resource(
    "wif-repository-id-pinned",
    types=WIF_PROVIDER,
    title="Workload identity provider pins the repository's numeric id",
    severity="medium",
    family="ci",
    rationale="A repository name can be freed and re-registered by someone else (a renamed or "
    "deleted repository); the numeric id cannot.",
    remediation="Set bulwark:ci.github_repository_id (adds `assertion.repository_id == '...'`).",
    enforcement="advisory",
)
def wif_repository_id_pinned(res: Resource) -> Sequence[str]:
    if _pinned(res, REPOSITORY_ID_PIN):
        return []
    return [
        "attributeCondition does not pin assertion.repository_id: set "
        "bulwark:ci.github_repository_id"
    ]


@RULES.resource(
    "wif-principal-scoped",
    types=(SA_IAM_MEMBER, SA_IAM_BINDING),
    title="Workload identity users are scoped to one repository",
    severity="high",
    family="ci",
    rationale="A principalSet of the whole pool (`/*`) lets every identity the pool admits "
    "act as the deployer.",
    remediation="Grant roles/iam.workloadIdentityUser to "
    "principalSet://.../attribute.repository/OWNER/NAME.",
)
def wif_principal_scoped(res: Resource) -> Sequence[str] | NotApplicable:
    if res.get("role") != "roles/iam.workloadIdentityUser":
        return NotApplicable("not a workload identity grant")
    return [
        f"{member} is not scoped to attribute.repository: grant "
        "principalSet://.../attribute.repository/OWNER/NAME instead"
        for member in _members(res)
        if "/attribute.repository/" not in member
    ]


def _seconds(text: object) -> float | None:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)s", str(text or ""))
    return float(match[1]) if match else None


@RULES.resource(
    "kms-rotation-90-days",
    types=KMS_KEY,
    title="KMS keys rotate at least every 90 days",
    severity="medium",
    family="kms",
    rationale="Regular rotation limits how much data one key version protects and how long a "
    "leaked version stays useful.",
    remediation="Set rotationPeriod to 7776000s or less.",
    cis="1.10",
    checkov="CKV_GCP_43",
)
def kms_rotation_90_days(res: Resource) -> Sequence[str]:
    seconds = _seconds(res.get("rotationPeriod"))
    if seconds is not None and 0 < seconds <= KMS_MAX_ROTATION_SECONDS:
        return []
    return [f"rotationPeriod is {res.get('rotationPeriod') or 'unset'}: set 7776000s or less"]


def _granted_only(res: Resource) -> list[str] | None:
    """The roles a conditioned grant may hand out, or None when its condition does not limit
    them (no condition, or one that is not a plain `modifiedGrantsByRole` allow-list)."""
    expression = res.get("condition.expression")
    found = GRANT_LIMIT.match(str(expression).strip()) if expression else None
    if found is None:
        return None
    return [part.strip().strip("'\"") for part in found[1].split(",") if part.strip()]


@RULES.resource(
    "iam-no-owner-escalation",
    types=(PROJECT_IAM_MEMBER, PROJECT_IAM_BINDING),
    title="No CI or workload identity holds a project role it could make itself owner with",
    severity="critical",
    family="iam",
    rationale="A deployer or workload that can change the project's IAM policy, or IAM on any "
    "service account, or mint keys or tokens for them, is one API call from owner: a stolen CI "
    "token, or a compromised app, takes the whole project.",
    remediation="Grant the narrow role (iam.serviceAccountCreator, per-account "
    "serviceAccountUser); where the stack must grant roles, condition projectIamAdmin with "
    "api.getAttribute('iam.googleapis.com/modifiedGrantsByRole', []).hasOnly([...]) listing "
    "harmless roles only.",
)
def iam_no_owner_escalation(res: Resource) -> Sequence[str]:
    role = res.get("role")
    automation = [m for m in _members(res) if AUTOMATION_MEMBER.match(m)]
    if role not in ESCALATING_ROLES or not automation:
        return []
    if role in GRANTING_ROLES:
        allowed = _granted_only(res)
        if allowed is not None and not set(allowed) & NEVER_GRANTED:
            return []
        if allowed is not None:
            bad = sorted(set(allowed) & NEVER_GRANTED)
            return [
                f"{role} for {automation[0]} may grant {', '.join(bad)}: remove them from "
                "the condition's list"
            ]
    return [
        f"{role} lets {automation[0]} make itself owner: grant a narrower role, or condition "
        "it to the roles it must grant"
    ]


def _parent(urn: str) -> str:
    """The URN up to the resource's own type: resources with one parent component share it."""
    head, _, _name = urn.rpartition("::")
    return head.rpartition("$")[0] or head


@RULES.stack(
    "wif-pull-requests-read-only",
    title="What pull requests can authenticate as may only read",
    severity="critical",
    family="ci",
    rationale="Anyone who can open a pull request can change the workflow it runs, so whatever "
    "its token reaches is theirs: it must read (preview), never change, decrypt or act as "
    "another account.",
    remediation="Grant the preview account viewer roles only (roles/<service>.viewer, "
    "iam.securityReviewer); deploy from the branch through a provider pinned to "
    "`assertion.ref`, in a pool of its own.",
)
def wif_pull_requests_read_only(
    resources: Sequence[Resource], config: Mapping[str, object]
) -> Sequence[Finding] | NotApplicable:
    previews = [r for r in resources if r.type == WIF_PROVIDER and admits_pull_requests(r)]
    if not previews:
        return NotApplicable("no workload identity provider admits pull requests")
    found: list[Finding] = []
    for provider in previews:
        for res in (r for r in resources if _parent(r.urn) == _parent(provider.urn)):
            role = res.get("role")
            if res.type in (PROJECT_IAM_MEMBER, PROJECT_IAM_BINDING):
                allowed = isinstance(role, str) and READ_ONLY_ROLE.match(role) is not None
            elif res.type in IAM_MEMBERS + IAM_BINDINGS:
                allowed = role == "roles/iam.workloadIdentityUser"
            else:
                continue
            if not allowed or role in BASIC_ROLES:
                found.append(
                    Finding(
                        f"{res.name} grants {role} to an account pull requests can reach "
                        f"(through {provider.name}): grant viewer roles only",
                        res.urn,
                    )
                )
    return found
