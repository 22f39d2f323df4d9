"""Our SDK builds the same bytes as the wheel: the captured messages, re-made with the same
identity, ephemeral key and mask seed (sealed boxes are randomised, so seeds are compared
after opening)."""

from __future__ import annotations

from tests.conftest import load_json, read_vector
from xaynet.core.bincode import RoundParameters, decode_seed_dict, decode_sum_dict
from xaynet.core.crypto import EncryptKeyPair, SigningKeyPair
from xaynet.core.message.chunks import ChunkPayload, split_payload
from xaynet.core.message.envelope import encode_messages, open_message, parse_message, sign_message
from xaynet.core.message.payloads import SumPayload, UpdatePayload
from xaynet.sdk.tasks import Task, compose_sum, compose_sum2, compose_update, select_task

META = load_json("wire_vectors.json")
COORDINATOR = EncryptKeyPair.from_secret(bytes.fromhex(META["common"]["coordinator_secret_key"]))
VECTORS = {v["name"]: v for v in META["vectors"]}


def _setup(name: str) -> tuple[dict, RoundParameters, SigningKeyPair, bytes]:
    vector = VECTORS[name]
    params = RoundParameters.from_bincode(read_vector(vector["params_response"]["file"]))
    keys = SigningKeyPair.from_seed(bytes.fromhex(vector["participant_signing_seed"]))
    plain = open_message(read_vector(vector["messages"][0]["file"]), COORDINATOR)
    return vector, params, keys, plain


class _KnownEphemeral(EncryptKeyPair):
    """The wheel's ephemeral key: only its public half was recorded, which is all Sum needs."""


def test_sum_message_is_byte_identical() -> None:
    vector, params, keys, plain = _setup("wire_sum")
    assert select_task(keys, params) is Task.SUM
    ephemeral = _KnownEphemeral(bytes(32), bytes.fromhex(vector["ephemeral_public_key"]))
    (ours,) = encode_messages(keys, params.pk, compose_sum(keys, params, ephemeral))
    assert ours == plain


def test_sum_multipart_chunks_are_byte_identical() -> None:
    vector = VECTORS["wire_sum_multipart"]
    params = RoundParameters.from_bincode(read_vector(vector["params_response"]["file"]))
    keys = SigningKeyPair.from_seed(bytes.fromhex(vector["participant_signing_seed"]))
    captured = [open_message(read_vector(m["file"]), COORDINATOR) for m in vector["messages"]]
    chunks = [parse_message(c, COORDINATOR.public).payload for c in captured]
    assert all(isinstance(c, ChunkPayload) for c in chunks)
    wheel_payload = SumPayload.parse(b"".join(c.data for c in chunks))  # type: ignore[union-attr]
    ephemeral = _KnownEphemeral(bytes(32), wheel_payload.ephm_pk)
    ours = compose_sum(keys, params, ephemeral)
    assert ours == wheel_payload
    again = split_payload(ours.to_bytes(), vector["max_message_size"], chunks[0].message_id)  # type: ignore[union-attr]
    assert again is not None
    assert [sign_message(keys, params.pk, ours.tag, c.to_bytes(), multipart=True) for c in again] == captured


def test_update_message_matches_except_the_sealed_seeds() -> None:
    vector, params, keys, plain = _setup("wire_update")
    assert select_task(keys, params) is Task.UPDATE
    sums = decode_sum_dict(read_vector(vector["sums_response_file"]))
    seed = bytes.fromhex(vector["decrypted_mask_seed"])
    ours = compose_update(keys, params, sums, vector["local_model_f32"], scalar=vector["scalar"], seed=seed)
    theirs = parse_message(plain, COORDINATOR.public).payload
    assert isinstance(theirs, UpdatePayload)
    assert ours.sum_signature == theirs.sum_signature
    assert ours.update_signature == theirs.update_signature
    assert ours.masked_model.to_bytes() == theirs.masked_model.to_bytes()
    assert set(ours.local_seed_dict) == set(theirs.local_seed_dict)
    ephemeral = EncryptKeyPair.from_secret(bytes.fromhex(vector["sum_dict"][0]["ephemeral_secret_key"]))
    for pk, sealed in ours.local_seed_dict.items():
        assert ephemeral.open(sealed) == ephemeral.open(theirs.local_seed_dict[pk]) == seed
    # With the wheel's sealed seeds in place, the whole message is byte-identical.
    rebuilt = UpdatePayload(
        ours.sum_signature, ours.update_signature, ours.masked_model, theirs.local_seed_dict
    )
    assert sign_message(keys, params.pk, rebuilt.tag, rebuilt.to_bytes()) == plain


def test_sum2_message_is_byte_identical() -> None:
    vector, params, keys, plain = _setup("wire_sum2")
    # Reseal the served seed to an ephemeral key we hold: the derived mask is the same.
    ephemeral = EncryptKeyPair.generate()
    update_pk = bytes.fromhex(vector["seeds_response_update_participant_pk"])
    from xaynet.core.crypto import seal

    seeds = {update_pk: seal(ephemeral.public, bytes.fromhex(vector["served_mask_seed"]))}
    assert set(decode_seed_dict(read_vector(vector["seeds_response_file"]))) == {update_pk}
    (ours,) = encode_messages(keys, params.pk, compose_sum2(keys, params, ephemeral, seeds))
    assert ours == plain
