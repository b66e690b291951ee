"""The principal that owns an Idempotency-Key, from what API Gateway's IAM authorizer reports."""

import pytest

from rideonce.logic.principal import ANONYMOUS, principal, role_of_session


def test_an_iam_user_is_its_arn() -> None:
    assert principal("arn:aws:iam::123456789012:user/alice") == "arn:aws:iam::123456789012:user/alice"


def test_an_assumed_role_is_the_role_whatever_the_session() -> None:
    # Given two sessions of one role (a new container, refreshed credentials)
    first = principal("arn:aws:sts::123456789012:assumed-role/rider-app/i-0abc")
    second = principal("arn:aws:sts::123456789012:assumed-role/rider-app/botocore-session-1700000000")
    # Then both are the role, without the session name
    assert first == second == "arn:aws:sts::123456789012:assumed-role/rider-app"


def test_roles_of_other_accounts_or_partitions_stay_apart() -> None:
    assert principal("arn:aws:sts::111111111111:assumed-role/rider-app/s") != principal(
        "arn:aws:sts::222222222222:assumed-role/rider-app/s"
    )
    assert principal("arn:aws-cn:sts::123456789012:assumed-role/rider-app/s") == (
        "arn:aws-cn:sts::123456789012:assumed-role/rider-app"
    )


def test_a_cognito_identity_is_its_identity_id_not_the_pools_role() -> None:
    pool_role = "arn:aws:sts::123456789012:assumed-role/Cognito_ridersAuth_Role/CognitoIdentityCredentials"
    alice = principal(pool_role, "us-east-1:11111111-aaaa-4bbb-8ccc-000000000001")
    bob = principal(pool_role, "us-east-1:22222222-aaaa-4bbb-8ccc-000000000002")
    assert alice != bob
    assert alice == "cognito-identity:us-east-1:11111111-aaaa-4bbb-8ccc-000000000001"


def test_no_identity_shares_the_anonymous_scope() -> None:
    assert principal(None) == principal("") == ANONYMOUS


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:iam::123456789012:user/alice",
        "arn:aws:iam::123456789012:role/rider-app",
        "arn:aws:sts::123456789012:federated-user/alice",
        "arn:aws:sts::123456789012:assumed-role/rider-app",
        "arn:aws:sts::123456789012:assumed-role//session",
        "not an arn",
    ],
)
def test_only_role_session_arns_lose_their_last_part(arn: str) -> None:
    assert role_of_session(arn) is None
    assert principal(arn) == arn
