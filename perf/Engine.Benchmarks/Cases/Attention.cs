using Engine.Runtime;
using Engine.Tensors;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>attention</c>: forward + backward of sdpa(q, k, v).sum() for q, k, v [B=8, H=8, N=512, D=64] float32, no
/// mask (torch_bench.py's <c>attention</c>, which runs PyTorch's unfused softmax(q·kᵀ/8)·v). Engine runs the
/// fused FlashAttention-2 kernel (<c>Cpu/Attention.cs</c>): the [N, N] probabilities are never stored.
/// <para>
/// Flops counted are the ones the fused algorithm executes: forward 4·N²·D per head (Q·Kᵀ and P·V), backward
/// 10·N²·D (Q·Kᵀ recomputed, dV, dP, dQ, dK): 14·B·H·N²·D = 15.0 GFLOP at this shape (PyTorch's unfused
/// version does 12·B·H·N²·D, without the recomputation).
/// </para>
/// <para>
/// Extra fields: <c>step_peak_bytes_n512</c> and <c>step_peak_bytes_n1024</c>, the host allocator's peak
/// during one step above what was held before it (inputs excluded), at N = 512 and N = 1024 (linear growth
/// means about 2× from one to the other; an [N, N] matrix would make it 4×); and
/// <c>unfused_step_peak_bytes_n512</c>, the same for Engine's composite (materialized-P) form. The allocator's
/// peak is reset at the end of <see cref="Prepare"/>, so the runner's peak bytes cover the inputs and the
/// timed steps.
/// </para>
/// </summary>
public sealed class Attention : BenchCase
{
    /// <inheritdoc />
    public override string Name => "attention";

    /// <inheritdoc />
    public override string Description => "sdpa(q, k, v).sum() forward + backward, q/k/v [8, 8, 512, 64], no mask";

    /// <inheritdoc />
    public override string Target => "issue 6: >= 3x faster than PyTorch's unfused attention, memory linear in N";

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long b = options.Tiny ? 1 : options.Quick ? 2 : 8, h = options.Tiny ? 1 : options.Quick ? 2 : 8, n = options.Tiny ? 17 : options.Quick ? 80 : 512, d = 64;
        var device = options.Target;
        if (!device.IsCpu) ProbeDevice(device);
        var (q, k, v) = Inputs(device, b, h, n, d, seed: 0);
        var run = new BenchRun([b, h, n, d], () => Step(q, k, v, fused: true)) { Flops = 14.0 * b * h * n * n * d };
        run.Own(q);
        run.Own(k);
        run.Own(v);
        run.Extra["validation_max_rel_error"] = Validate(q, k, v);
        run.Extra["step_peak_bytes_n" + n] = StepPeak(device, q, k, v, fused: true);
        if (device.IsCpu) run.Extra["unfused_step_peak_bytes_n" + n] = StepPeak(device, q, k, v, fused: false);
        var (q2, k2, v2) = Inputs(device, b, h, 2 * n, d, seed: 1);
        using (q2)
        using (k2)
        using (v2)
            run.Extra["step_peak_bytes_n" + 2 * n] = StepPeak(device, q2, k2, v2, fused: true);
        // The runner's peak (the "peak MB" column) then covers the inputs and the timed fused steps only,
        // not the unfused and 2N measurements above.
        device.Allocator.ResetPeak();
        return run;
    }

    /// <summary>
    /// Runs forward + backward of the fused attention once on tiny inputs on <paramref name="device"/>; when an op
    /// of it has no kernel there (<see cref="NotSupportedException"/>, which names the op), the case is skipped
    /// with that reason instead of failing: the attention kernels may not have landed on every device.
    /// </summary>
    private static void ProbeDevice(BenchDevice device)
    {
        var (q, k, v) = Inputs(device, 1, 1, 4, 8, seed: 2);
        try
        {
            Step(q, k, v, fused: true);
            device.Synchronize();
        }
        catch (NotSupportedException e)
        {
            throw new BenchSkippedException($"Tensor.ScaledDotProductAttention does not run on {device.Device} yet: {e.Message}");
        }
        finally
        {
            q.Dispose();
            k.Dispose();
            v.Dispose();
        }
    }

    private static (Tensor Q, Tensor K, Tensor V) Inputs(BenchDevice device, long b, long h, long n, long d, ulong seed)
    {
        var g = new Generator(seed);
        return (device.Place(Tensor.Randn([b, h, n, d], generator: g).RequiresGrad_()),
                device.Place(Tensor.Randn([b, h, n, d], generator: g).RequiresGrad_()),
                device.Place(Tensor.Randn([b, h, n, d], generator: g).RequiresGrad_()));
    }

    /// <summary>One timed step: forward, sum, backward, gradients cleared (as torch_bench.py does).</summary>
    private static void Step(Tensor q, Tensor k, Tensor v, bool fused)
    {
        Tensor y;
        if (fused) y = Tensor.ScaledDotProductAttention(q, k, v);
        else { var (o, p) = Tensor.ScaledDotProductAttentionWithProbabilities(q, k, v); p.Dispose(); y = o; }
        using (y)
        using (var s = y.Sum())
            s.Backward();
        q.Grad = null;
        k.Grad = null;
        v.Grad = null;
    }

    /// <summary>Peak bytes of the device's allocator (the host's on the CPU) during one step above what was held before it.</summary>
    private static long StepPeak(BenchDevice device, Tensor q, Tensor k, Tensor v, bool fused)
    {
        var allocator = device.Allocator;
        long before = allocator.CurrentBytes;
        allocator.ResetPeak();
        Step(q, k, v, fused);
        device.Synchronize();
        return allocator.PeakBytes - before;
    }

    /// <summary>
    /// Output and the three gradients of the first and the last head against float64 loops (materialized
    /// softmax); returns the largest error relative to each result's largest magnitude.
    /// </summary>
    private static double Validate(Tensor q, Tensor k, Tensor v)
    {
        long b = q.Size(0), h = q.Size(1), n = q.Size(2), d = q.Size(3);
        using var y = Tensor.ScaledDotProductAttention(q, k, v);
        using (var s = y.Sum()) s.Backward();
        double worst = 0;
        // Host copies (the tensors may live on a device).
        float[] pq = q.ToArray<float>(), pk = k.ToArray<float>(), pv = v.ToArray<float>(), py = y.ToArray<float>();
        float[] gq = q.Grad!.ToArray<float>(), gk = k.Grad!.ToArray<float>(), gv = v.Grad!.ToArray<float>();
        double scale = 1 / Math.Sqrt(d);
        foreach (long head in new[] { 0, b * h - 1 })
        {
            long off = head * n * d;
            var p = new double[n * n];
            var o = new double[n * d];
            var dq = new double[n * d];
            var dk = new double[n * d];
            var dv = new double[n * d];
            for (long i = 0; i < n; i++)
            {
                double max = double.NegativeInfinity;
                for (long j = 0; j < n; j++)
                {
                    double dot = 0;
                    for (long e = 0; e < d; e++) dot += (double)pq[off + i * d + e] * pk[off + j * d + e];
                    p[i * n + j] = dot * scale;
                    max = Math.Max(max, p[i * n + j]);
                }
                double sum = 0;
                for (long j = 0; j < n; j++) sum += p[i * n + j] = Math.Exp(p[i * n + j] - max);
                for (long j = 0; j < n; j++) p[i * n + j] /= sum;
                for (long j = 0; j < n; j++)
                    for (long e = 0; e < d; e++) o[i * d + e] += p[i * n + j] * pv[off + j * d + e];
                // g = 1 (the sum): dP_j = Σ_e v[j, e]; dS_j = P_j (dP_j − Σ P dP).
                var dp = new double[n];
                double dot2 = 0;
                for (long j = 0; j < n; j++)
                {
                    for (long e = 0; e < d; e++) dp[j] += pv[off + j * d + e];
                    dot2 += p[i * n + j] * dp[j];
                }
                for (long j = 0; j < n; j++)
                {
                    double ds = p[i * n + j] * (dp[j] - dot2) * scale;
                    for (long e = 0; e < d; e++)
                    {
                        dq[i * d + e] += ds * pk[off + j * d + e];
                        dk[j * d + e] += ds * pq[off + i * d + e];
                        dv[j * d + e] += p[i * n + j];
                    }
                }
            }
            worst = Math.Max(worst, RelError(o, py.AsSpan((int)off)));
            worst = Math.Max(worst, RelError(dq, gq.AsSpan((int)off)));
            worst = Math.Max(worst, RelError(dk, gk.AsSpan((int)off)));
            worst = Math.Max(worst, RelError(dv, gv.AsSpan((int)off)));
        }
        q.Grad = null;
        k.Grad = null;
        v.Grad = null;
        if (!(worst <= 1e-4)) throw new BenchValidationException($"attention: error {worst:g3} (relative to each result's largest magnitude) against float64 loops exceeds 1e-4");
        return worst;
    }

    private static double RelError(double[] want, ReadOnlySpan<float> got)
    {
        double scale = want.Max(Math.Abs), worst = 0;
        for (int i = 0; i < want.Length; i++) worst = Math.Max(worst, Math.Abs(got[i] - want[i]));
        return worst / Math.Max(scale, 1e-30);
    }
}
