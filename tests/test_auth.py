"""Authentication: every RPC shape refuses calls without a valid token; health and reflection don't
need one; keys come from a generated secret, a secret file, a PEM public key or a JWKS file."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from taskservice.access.auth import JwtAuthenticator, KeySet, VerificationKey, load_authenticator
from taskservice.access.caller import Caller
from taskservice.api import task_service_pb2 as pb
from taskservice.api import task_service_pb2_grpc as rpc
from taskservice.domain.errors import Unauthenticated
from taskservice.server.config import Settings, SettingsError
from tests.servers import TASKSERVICE, ServerProcess, bearer, free_port

Metadata = list[tuple[str, str]]
SECRET_LEN = 48


def _call_unary(stub: rpc.TaskServiceStub, md: Metadata) -> Any:
    return stub.CreateTask(pb.CreateTaskRequest(title="should not exist"), metadata=md, timeout=5)


def _call_server_stream(stub: rpc.TaskServiceStub, md: Metadata) -> Any:
    return next(iter(stub.WatchTasks(pb.WatchTasksRequest(include_initial=True), metadata=md, timeout=5)))


def _call_client_stream(stub: rpc.TaskServiceStub, md: Metadata) -> Any:
    requests = iter([pb.CreateTaskRequest(title="should not exist")])
    return stub.BulkCreateTasks(requests, metadata=md, timeout=5)


def _call_bidi(stub: rpc.TaskServiceStub, md: Metadata) -> Any:
    commands = iter([pb.TaskCommand(create=pb.CreateTaskRequest(title="should not exist"))])
    return list(stub.ProcessTaskStream(commands, metadata=md, timeout=5))


SHAPES: dict[str, Callable[[rpc.TaskServiceStub, Metadata], Any]] = {
    "unary": _call_unary,
    "server-streaming": _call_server_stream,
    "client-streaming": _call_client_stream,
    "bidirectional": _call_bidi,
}


def _secret(server: ServerProcess) -> bytes:
    return (server.data_dir / "jwt-secret").read_bytes().strip()


def _claims(**overrides: Any) -> dict[str, Any]:
    claims: dict[str, Any] = {"sub": "mallory", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return {k: v for k, v in claims.items() if v is not None}


def _hs256(claims: dict[str, Any], key: bytes, header: dict[str, Any] | None = None) -> str:
    """Sign by hand, so tests can make tokens PyJWT would refuse to make (e.g. HS256 with a PEM key)."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    signing_input = f"{part(header or {'alg': 'HS256', 'typ': 'JWT'})}.{part(claims)}"
    mac = hmac.new(key, signing_input.encode(), hashlib.sha256).digest()
    return signing_input + "." + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


def _bad_credentials(server: ServerProcess) -> dict[str, Metadata]:
    secret = _secret(server)
    return {
        "no token": [],
        "not a bearer token": [("authorization", "Basic bWFsbG9yeTpzZWNyZXQ=")],
        "malformed": bearer("not.a.jwt"),
        "garbage": bearer("x" * 300),
        "alg none": bearer(jwt.encode(_claims(), None, algorithm="none")),  # type: ignore[arg-type]
        "expired": bearer(jwt.encode(_claims(exp=int(time.time()) - 3600), secret, algorithm="HS256")),
        "not yet valid": bearer(jwt.encode(_claims(nbf=int(time.time()) + 3600), secret, algorithm="HS256")),
        "wrong key": bearer(jwt.encode(_claims(), b"k" * SECRET_LEN, algorithm="HS256")),
        "missing sub": bearer(jwt.encode(_claims(sub=None), secret, algorithm="HS256")),
        "empty sub": bearer(jwt.encode(_claims(sub=""), secret, algorithm="HS256")),
        "missing exp": bearer(jwt.encode(_claims(exp=None), secret, algorithm="HS256")),
        "other algorithm": bearer(jwt.encode(_claims(), secret, algorithm="HS512")),
        "tampered claims": bearer(_tamper(jwt.encode(_claims(), secret, algorithm="HS256"))),
    }


def _tamper(token: str) -> str:
    header, _, signature = token.split(".")
    claims = base64.urlsafe_b64encode(json.dumps(_claims(sub="admin", roles=["admin"])).encode())
    return f"{header}.{claims.rstrip(b'=').decode()}.{signature}"


@pytest.mark.parametrize("shape", SHAPES)
def test_every_rpc_shape_refuses_bad_credentials_with_unauthenticated(
    jwt_server: ServerProcess, shape: str
) -> None:
    stub = jwt_server.stub()
    for name, md in _bad_credentials(jwt_server).items():
        with pytest.raises(grpc.RpcError) as refused:
            SHAPES[shape](stub, md)
        assert refused.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


def test_refused_calls_change_nothing(jwt_server: ServerProcess) -> None:
    stub = jwt_server.stub()
    for shape in SHAPES.values():
        with pytest.raises(grpc.RpcError):
            shape(stub, [])
    admin = bearer(jwt_server.token("root", admin=True))
    listed = stub.ListTasks(pb.ListTasksRequest(page_size=1000), metadata=admin)
    assert "should not exist" not in {task.title for task in listed.tasks}


@pytest.mark.parametrize("shape", SHAPES)
def test_every_rpc_shape_accepts_a_valid_token(jwt_server: ServerProcess, shape: str) -> None:
    SHAPES[shape](jwt_server.stub(), bearer(jwt_server.token("valid-user")))


def test_created_by_is_the_token_subject(jwt_server: ServerProcess) -> None:
    task = jwt_server.stub().CreateTask(
        pb.CreateTaskRequest(title="mine"), metadata=bearer(jwt_server.token("ann"))
    )
    assert task.created_by == "ann"


def test_health_and_reflection_need_no_token(jwt_server: ServerProcess) -> None:
    channel = jwt_server.channel()
    health = health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=5)
    assert health.status == health_pb2.HealthCheckResponse.SERVING
    request = reflection_pb2.ServerReflectionRequest(list_services="")
    answers = list(reflection_pb2_grpc.ServerReflectionStub(channel).ServerReflectionInfo(iter([request])))
    names = {service.name for service in answers[0].list_services_response.service}
    assert "taskservice.TaskService" in names


def test_generated_secret_is_private_and_strong(jwt_server: ServerProcess) -> None:
    path = jwt_server.data_dir / "jwt-secret"
    assert path.stat().st_mode & 0o777 == 0o600
    assert len(_secret(jwt_server)) >= 32


def test_server_on_loopback_prints_a_working_admin_token(jwt_server: ServerProcess) -> None:
    lines = jwt_server.log().splitlines()
    board = next(line for line in lines if "/#token=" in line)
    assert f"127.0.0.1:{jwt_server.http_port}/#token=" in board
    token = board.rpartition("#token=")[2].strip()
    listed = jwt_server.stub().ListTasks(pb.ListTasksRequest(), metadata=bearer(token))
    assert listed.total_count >= 0


def test_token_command_mints_a_token_the_server_accepts(jwt_server: ServerProcess) -> None:
    out = subprocess.run(
        [TASKSERVICE, "token", "--user", "cli-user", "--ttl", "10m", "--data-dir", str(jwt_server.data_dir)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    token = out.stdout.strip()
    assert jwt.decode(token, options={"verify_signature": False})["exp"] - time.time() <= 600
    task = jwt_server.stub().CreateTask(pb.CreateTaskRequest(title="from cli token"), metadata=bearer(token))
    assert task.created_by == "cli-user"


def _serve_fails(tmp_path: Path, *args: str) -> str:
    """Run `serve` expecting it to refuse to start; return what it said."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        [TASKSERVICE, "serve", "--data-dir", str(tmp_path), "--http-addr", f"127.0.0.1:{free_port()}", *args],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=tmp_path,
    )
    assert result.returncode != 0
    return result.stderr


def test_auth_none_refuses_a_non_loopback_address(tmp_path: Path) -> None:
    said = _serve_fails(tmp_path, "--auth", "none", "--grpc-addr", f"0.0.0.0:{free_port()}")
    assert "--i-understand-this-is-insecure" in said


def test_short_secret_is_refused(tmp_path: Path) -> None:
    secret = tmp_path / "short"
    secret.write_text("too-short")
    with pytest.raises(SettingsError, match="at least 32 bytes"):
        load_authenticator(Settings(data_dir=str(tmp_path), jwt_secret_file=str(secret)))


# -- public keys: RS256 / ES256 from a PEM file or a JWKS file ---------------------------------------


def _pem(public_key: Any) -> bytes:
    pem: bytes = public_key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def ec_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


@pytest.fixture(scope="module")
def rs256_server(
    tmp_path_factory: pytest.TempPathFactory, rsa_key: rsa.RSAPrivateKey
) -> Iterator[ServerProcess]:
    """RS256 with a PEM public key, and issuer and audience enforced."""
    data = tmp_path_factory.mktemp("rs256")
    (data / "public.pem").write_bytes(_pem(rsa_key.public_key()))
    proc = ServerProcess.jwt(
        data,
        "--jwt-public-key-file",
        str(data / "public.pem"),
        "--jwt-issuer",
        "https://issuer.example",
        "--jwt-audience",
        "taskservice",
    ).start()
    yield proc
    proc.stop()


def test_rs256_token_with_right_issuer_and_audience_is_accepted(
    rs256_server: ServerProcess, rsa_key: rsa.RSAPrivateKey
) -> None:
    token = jwt.encode(
        _claims(sub="rsa-user", iss="https://issuer.example", aud="taskservice"), rsa_key, algorithm="RS256"
    )
    task = rs256_server.stub().CreateTask(pb.CreateTaskRequest(title="signed"), metadata=bearer(token))
    assert task.created_by == "rsa-user"


def test_rs256_server_refuses_wrong_issuer_audience_and_key_confusion(
    rs256_server: ServerProcess, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    good = {"iss": "https://issuer.example", "aud": "taskservice"}
    public_pem = _pem(rsa_key.public_key())
    refused = {
        "wrong issuer": jwt.encode(
            _claims(**{**good, "iss": "https://evil.example"}), rsa_key, algorithm="RS256"
        ),
        "wrong audience": jwt.encode(_claims(**{**good, "aud": "other"}), rsa_key, algorithm="RS256"),
        "no issuer": jwt.encode(_claims(aud="taskservice"), rsa_key, algorithm="RS256"),
        "other key type": jwt.encode(_claims(**good), ec_key, algorithm="ES256"),
        "HS256 signed with the public key": _hs256(_claims(**good), public_pem),
    }
    stub = rs256_server.stub()
    for name, token in refused.items():
        for shape in SHAPES.values():
            with pytest.raises(grpc.RpcError) as error:
                shape(stub, bearer(token))
            assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED, name


def test_jwks_file_selects_the_key_by_kid(
    tmp_path: Path, rsa_key: rsa.RSAPrivateKey, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    keys = [
        {**RSAAlgorithm.to_jwk(rsa_key.public_key(), as_dict=True), "kid": "rsa-1"},
        {**ECAlgorithm.to_jwk(ec_key.public_key(), as_dict=True), "kid": "ec-1"},
    ]
    (tmp_path / "jwks.json").write_text(json.dumps({"keys": keys}))
    server = ServerProcess.jwt(tmp_path / "data", "--jwt-jwks-file", str(tmp_path / "jwks.json")).start()
    try:
        stub = server.stub()
        es = jwt.encode(_claims(sub="ec-user"), ec_key, algorithm="ES256", headers={"kid": "ec-1"})
        rs = jwt.encode(_claims(sub="rsa-user"), rsa_key, algorithm="RS256", headers={"kid": "rsa-1"})
        assert stub.CreateTask(pb.CreateTaskRequest(title="es"), metadata=bearer(es)).created_by == "ec-user"
        assert stub.CreateTask(pb.CreateTaskRequest(title="rs"), metadata=bearer(rs)).created_by == "rsa-user"
        crossed = jwt.encode(_claims(), ec_key, algorithm="ES256", headers={"kid": "rsa-1"})
        with pytest.raises(grpc.RpcError) as error:
            stub.CreateTask(pb.CreateTaskRequest(title="crossed"), metadata=bearer(crossed))
        assert error.value.code() == grpc.StatusCode.UNAUTHENTICATED
    finally:
        server.stop()


# -- the verified-token cache (in process, with a controlled clock) -----------------------------------


def test_verified_tokens_are_cached_until_they_expire() -> None:
    secret = b"s" * SECRET_LEN
    now = [time.time()]
    verified = [0]

    class CountingKeys(KeySet):
        def for_header(self, header: Any) -> VerificationKey:
            verified[0] += 1
            return super().for_header(header)

    keys = CountingKeys({None: VerificationKey(secret, "HS256")})
    auth = JwtAuthenticator(keys, leeway=0, clock=lambda: now[0])
    token = jwt.encode({"sub": "u", "exp": int(now[0]) + 60}, secret, algorithm="HS256")
    metadata = {"authorization": f"Bearer {token}"}
    for _ in range(100):
        assert auth.authenticate(metadata).user_id == "u"
    assert verified[0] == 1
    now[0] += 61  # past exp: the cached entry no longer counts and the token is checked again
    auth.authenticate(metadata)
    assert verified[0] == 2


# -- key configuration (in process: no server needed to read a key file) ------------------------------


def _authenticator_for(tmp_path: Path, public_key: Any) -> Any:
    path = tmp_path / "key.pem"
    path.write_bytes(_pem(public_key))
    return load_authenticator(Settings(data_dir=str(tmp_path), jwt_public_key_file=str(path)))


def test_es256_public_key_file_verifies_es256_tokens_only(
    tmp_path: Path, ec_key: ec.EllipticCurvePrivateKey
) -> None:
    auth = _authenticator_for(tmp_path, ec_key.public_key())
    token = jwt.encode(_claims(sub="ec", roles=["admin"]), ec_key, algorithm="ES256")
    assert auth.authenticate({"authorization": f"Bearer {token}"}) == Caller("ec", is_admin=True)
    with pytest.raises(Unauthenticated):
        auth.authenticate({"authorization": f"Bearer {_hs256(_claims(), _pem(ec_key.public_key()))}"})


@pytest.mark.parametrize(
    "weak",
    [
        lambda: rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key(),
        lambda: ec.generate_private_key(ec.SECP384R1()).public_key(),
    ],
    ids=["rsa-1024", "p-384"],
)
def test_unsupported_public_keys_are_refused_at_start(tmp_path: Path, weak: Callable[[], Any]) -> None:
    with pytest.raises(SettingsError):
        _authenticator_for(tmp_path, weak())


def test_only_one_key_source_may_be_configured(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("s" * SECRET_LEN)
    settings = Settings(data_dir=str(tmp_path), jwt_secret_file=str(secret), jwt_jwks_file=str(secret))
    with pytest.raises(SettingsError):
        load_authenticator(settings)
