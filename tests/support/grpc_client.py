#!/usr/bin/env python3
"""A gRPC client nobody on this project wrote (grpcio, the C core) calling test.Echo through
gatehouse with mTLS. No protoc: messages are one-string-field protobufs encoded by hand.

Usage: grpc_client.py TARGET AUTHORITY CA_PEM CERT_PEM KEY_PEM
       grpc_client.py TARGET --plaintext      (h2c straight to the test server, a control)
Prints one JSON object with what each call returned; tests/grpc.rs asserts on it.
"""

import json
import sys

import grpc

DEADLINE = 10  # seconds, every call


def varint(n):
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def encode(message):
    """EchoRequest { string message = 1; }"""
    data = message.encode()
    return b"\x0a" + varint(len(data)) + data


def decode(data):
    """EchoReply { string message = 1; string xfcc = 2; } as a dict."""
    fields, i = {}, 0
    while i < len(data):
        key, i = read_varint(data, i)
        if key & 7 != 2:
            raise ValueError("unexpected wire type in %r" % data)
        size, i = read_varint(data, i)
        fields[key >> 3] = data[i : i + size].decode()
        i += size
    return {"message": fields.get(1, ""), "xfcc": fields.get(2, "")}


def read_varint(data, i):
    n, shift = 0, 0
    while True:
        byte = data[i]
        i += 1
        n |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            return n, i


def error(e):
    metadata = {}
    for key, value in e.trailing_metadata() or ():
        metadata[key] = value.hex() if isinstance(value, bytes) else value
    return {"code": e.code().name, "details": e.details(), "trailers": metadata}


def unary(channel, path, message):
    call = channel.unary_unary(path, request_serializer=None, response_deserializer=decode)
    try:
        return {"reply": call(encode(message), timeout=DEADLINE)}
    except grpc.RpcError as e:
        return error(e)


def stream(channel, path, messages):
    call = channel.stream_stream(path, request_serializer=None, response_deserializer=decode)
    replies = []
    try:
        for reply in call(iter([encode(m) for m in messages]), timeout=DEADLINE):
            replies.append(reply)
        return {"replies": replies, "code": "OK"}
    except grpc.RpcError as e:
        return dict(error(e), replies=replies)


def open_channel(args):
    if args[1:] == ["--plaintext"]:
        return grpc.insecure_channel(args[0])
    target, authority, ca, cert, key = args

    def read(path):
        with open(path, "rb") as f:
            return f.read()

    creds = grpc.ssl_channel_credentials(
        root_certificates=read(ca), private_key=read(key), certificate_chain=read(cert)
    )
    options = [
        ("grpc.ssl_target_name_override", authority),
        ("grpc.default_authority", authority),
    ]
    return grpc.secure_channel(target, creds, options=options)


def main():
    with open_channel(sys.argv[1:]) as channel:
        grpc.channel_ready_future(channel).result(timeout=DEADLINE)
        result = {
            "unary": unary(channel, "/test.Echo/Unary", "hello from grpcio"),
            "bidi": stream(channel, "/test.Echo/BidiStream", ["one", "two", "three"]),
            "forbidden": unary(channel, "/test.Echo/Forbidden", "let me in"),
            "fail_late": stream(channel, "/test.Echo/FailLate", ["first"]),
            "no_route": unary(channel, "/other.Service/Method", "anyone?"),
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
