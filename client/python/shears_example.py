#!/usr/bin/python3
"""Creates a pruning job, watches its events until it ends, and prints the result.

    PYTHONPATH=GENERATED_DIR python3 shears_example.py --server HOST:PORT \
        --model file:///models/llama --method magnitude --sparsity 0.5 --output file:///models/out

GENERATED_DIR is what generate.sh wrote. Exit status: 0 when the job succeeded, 1 otherwise.
"""
import argparse
import sys

import grpc
from shears.v1 import job_pb2, pruning_pb2, pruning_pb2_grpc


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--server", default="localhost:50051")
    parser.add_argument("--model", required=True)
    parser.add_argument("--method", default="magnitude")
    parser.add_argument("--sparsity", type=float, default=0.5)
    parser.add_argument("--output", required=True)
    args = parser.parse_args()

    stub = pruning_pb2_grpc.PruningStub(grpc.insecure_channel(args.server))
    spec = job_pb2.JobSpec(
        model_uri=args.model,
        method=job_pb2.Method.Value("METHOD_" + args.method.upper().replace("-", "_")),
        target_sparsity=args.sparsity,
        output=job_pb2.OutputSpec(uri=args.output),
    )
    job = stub.CreateJob(pruning_pb2.CreateJobRequest(spec=spec), timeout=30)
    print(f"created {job.id}")
    for event in stub.WatchJob(pruning_pb2.WatchJobRequest(job_id=job.id), timeout=3600):
        kind = event.WhichOneof("payload")
        if kind == "progress":
            print(f"  {event.progress.stage}: {event.progress.message}")
        elif kind == "state_change":
            print(f"  state {job_pb2.JobState.Name(event.state_change.state)}")
    job = stub.GetJob(pruning_pb2.GetJobRequest(job_id=job.id), timeout=30)
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
