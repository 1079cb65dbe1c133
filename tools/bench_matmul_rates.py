"""Matrix-multiply rates of this CPU: fp32, int8 through fbgemm (dynamic Linear), raw int8 GEMM.

    tools/venv/bin/python tools/bench_matmul_rates.py [--threads 2] [--size 1024]

The "physical limit" figures of the int8 issue: a model's MACs divided by its latency
(asrc-bench footprint) against these rates. 1 MAC = one multiply-add.
"""
import argparse
import time

import torch

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
parser.add_argument("--threads", type=int, default=2)
parser.add_argument("--size", type=int, default=1024, help="M = K = N of the products")
args = parser.parse_args()
torch.set_num_threads(args.threads)
def rate(fn, macs, n=20):
    for _ in range(3): fn()
    t=time.perf_counter()
    for _ in range(n): fn()
    return macs*n/(time.perf_counter()-t)/1e9
M = K = N = args.size
a=torch.randn(M,K); b=torch.randn(K,N)
print("fp32 matmul GMAC/s", round(rate(lambda: a@b, M*K*N),1))
lin=torch.nn.Linear(K,N)
q=torch.ao.nn.quantized.dynamic.Linear(K,N); q.set_weight_bias(torch.quantize_per_tensor(lin.weight.detach(),0.01,0,torch.qint8), lin.bias.detach())
print("int8 dynamic Linear (fbgemm, incl. activation quantization) GMAC/s", round(rate(lambda: q(a), M*K*N),1))
ai=torch.randint(-128,127,(M,K),dtype=torch.int8); bi=torch.randint(-128,127,(K,N),dtype=torch.int8)
try:
    print("int8 torch._int_mm GMAC/s", round(rate(lambda: torch._int_mm(ai,bi), M*K*N),1))
except Exception as e: print("_int_mm:", str(e)[:80])
try:  # oneDNN's u8 x s8 matmul, what asrc's int8 CPU fast path runs (asrc.models.int8_cnn, int8.DynamicInt8Linear)
    au = torch.randint(0, 255, (M, K), dtype=torch.uint8)
    wi = torch.randint(-127, 127, (N, K), dtype=torch.int8)
    packed = torch.ops.onednn.qlinear_prepack(wi, None)
    scales, zeros = torch.full((N,), 0.01), torch.zeros(N, dtype=torch.long)
    print("int8 oneDNN qlinear_pointwise (uint8 in, float out) GMAC/s", round(rate(
        lambda: torch.ops.onednn.qlinear_pointwise(au, 0.02, 128, packed, scales, zeros, None, 1.0, 0, torch.float32,
                                                   "none", [], ""), M * K * N), 1))
except Exception as e: print("onednn:", str(e)[:80])
