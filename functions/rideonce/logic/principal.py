"""Who owns an Idempotency-Key: the principal behind a request, never its credential session.

A client that retries from a new container, or after its role credentials were refreshed, signs with a
new session but is the same principal, so its retry must find its key. Riders behind one Cognito
identity-pool role share that role's ARN but are different principals, so their keys must not meet.

What API Gateway puts in `requestContext.authorizer.iam` for IAM-authorized HTTP API routes:
https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-develop-integrations-lambda.html
ARN formats (assumed-role session ARNs end in the session name):
https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-arns
"""

ANONYMOUS = "anonymous"
COGNITO_PREFIX = "cognito-identity:"
_ASSUMED_ROLE = "assumed-role/"


def principal(user_arn: str | None, cognito_identity_id: str | None = None) -> str:
    """The scope of a caller's Idempotency-Keys.

    - a Cognito identity: its identity id (every identity of a pool signs as the pool's role);
    - an assumed role, `arn:aws:sts::ACCOUNT:assumed-role/ROLE/SESSION`: the role, without the session;
    - an IAM user (or any other ARN): the ARN as it is;
    - no identity at all (routes opened with WriteAuth=NONE): one shared anonymous scope.
    """
    if cognito_identity_id:
        return COGNITO_PREFIX + cognito_identity_id
    if not user_arn:
        return ANONYMOUS
    return role_of_session(user_arn) or user_arn


def role_of_session(arn: str) -> str | None:
    """`arn:PARTITION:sts::ACCOUNT:assumed-role/ROLE` for a role session's ARN; None for any other ARN."""
    parts = arn.split(":", 5)
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sts" or not parts[5].startswith(_ASSUMED_ROLE):
        return None
    role, _, session = parts[5].removeprefix(_ASSUMED_ROLE).partition("/")
    if not role or not session:
        return None
    return ":".join([*parts[:5], _ASSUMED_ROLE + role])
