#!/usr/bin/python3
"""Creates a pruning job, watches its events until it ends, and prints the result.

    PYTHONPATH=GENERATED_DIR python3 shears_example.py --server HOST:PORT \
        --tls-ca ca.crt --token TOKEN \
        --model file:///models/llama --method magnitude --sparsity 0.5 --output file:///models/out

GENERATED_DIR is what generate.sh wrote. --tls-ca dials over TLS trusting that CA (plaintext
without it, for a server on loopback); the token (--token, or $SHEARS_TOKEN) goes with every call
as "authorization: Bearer TOKEN". Exit status: 0 when the job succeeded, 1 otherwise.
"""
import argparse
import os
import sys
import time

import grpc
from shears.v1 import job_pb2, pruning_pb2, pruning_pb2_grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", default="magnitude")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--output", required=True)
    parser.add_argument("--tls-ca")
    parser.add_argument("--token", default=os.environ.get("SHEARS_TOKEN", ""))
    args = parser.parse_args()

    if args.tls_ca:
        with open(args.tls_ca, "rb") as f:
            channel = grpc.secure_channel(args.server, grpc.ssl_channel_credentials(root_certificates=f.read()))
    else:
        channel = grpc.insecure_channel(args.server)
    # Metadata by hand rather than call credentials, which gRPC sends over TLS only.
    identity = [("authorization", f"Bearer {args.token}")] if args.token else []
    stub = pruning_pb2_grpc.PruningStub(channel)
    spec = job_pb2.JobSpec(
        model_uri=args.model,
        method=job_pb2.Method.Value("METHOD_" + args.method.upper().replace("-", "_")),
        target_sparsity=args.sparsity,
        output=job_pb2.OutputSpec(uri=args.output),
    )
    job = stub.CreateJob(pruning_pb2.CreateJobRequest(spec=spec), timeout=30, metadata=identity)
    print(f"created {job.id}")
    # A stream ended UNAVAILABLE or CANCELLED (a server replica draining or dying) goes on from the last event
    # seen, through whichever replica answers next.
    after, tries = 0, 0
    while True:
        try:
            request = pruning_pb2.WatchJobRequest(job_id=job.id, after_sequence=after)
            for event in stub.WatchJob(request, timeout=3600, metadata=identity):
                after, tries = event.sequence, 0
                kind = event.WhichOneof("payload")
                if kind == "progress":
                    print(f"  {event.progress.stage}: {event.progress.message}")
                elif kind == "state_change":
                    print(f"  state {job_pb2.JobState.Name(event.state_change.state)}")
            break
        except grpc.RpcError as e:
            tries += 1
            # CANCELLED too: this client cancels nothing, so it is a server that stopped mid-call.
            if e.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED) or tries > 30:
                raise
            print(f"  watch interrupted ({e.details()}); resuming after event {after}", file=sys.stderr)
            time.sleep(min(0.1 * 2 ** min(tries, 6), 5))
    job = stub.GetJob(pruning_pb2.GetJobRequest(job_id=job.id), timeout=30, metadata=identity)
    print(f"{job.id} {job_pb2.JobState.Name(job.state)}")
    if job.state != job_pb2.JOB_STATE_SUCCEEDED:
        print(f"error: {job.error}")
        return 1
    r = job.result
    print(f"achieved sparsity {r.achieved_sparsity:.4f} of {r.parameters_before} parameters")
    for artifact in r.artifacts:
        print(f"  {artifact.uri} {artifact.size_bytes} bytes sha256 {artifact.sha256}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
