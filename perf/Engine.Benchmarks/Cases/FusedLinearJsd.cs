using Engine.Distillation;
using Engine.Tensors;
using TensorPrimitives = System.Numerics.Tensors.TensorPrimitives;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>fused-linear-jsd</c>: student and teacher lm-heads, logits = h·Wᵀ, then JSD(β = 0.5) on the logits,
/// summed over rows / n, forward + backward wrt the student's hidden states and weight, [1024 tokens, 1024 hidden,
/// 32000 vocab] (torch_bench.py's <c>fused_linear_jsd</c>: h_s, h_t ~ N(0, 1), W ~ 0.02·N(0, 1)). Runs
/// <see cref="FusedLinearDivergences.Jsd"/> (chunks of 128 rows: never the [1024, 32000] logits). Flops: the four
/// products of the work (2 forward, 2 for the student's gradients), 4·2·N·H·V.
/// </summary>
public sealed class FusedLinearJsd : BenchCase
{
    /// <inheritdoc />
    public override string Name => "fused-linear-jsd";

    /// <inheritdoc />
    public override string Description => "JSD_0.5(softmax(h_t W_t^T) || softmax(h_s W_s^T)), [1024, 1024, 32000], forward + backward, chunked";

    /// <inheritdoc />
    public override string Target => "issue 5: faster than PyTorch, peak memory <= 25% of PyTorch's peak RSS";

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long n = options.Quick ? 64 : 1024, h = options.Quick ? 64 : 1024, v = options.Quick ? 1000 : 32000;
        var hs = Tensor.Randn([n, h], generator: new Generator(5)).RequiresGrad_();
        // W = 0.02·N(0, 1), scaled in place (no second [V, H] buffer while preparing).
        var ws = Tensor.Randn([v, h], generator: new Generator(6));
        TensorPrimitives.Multiply(ws.Span<float>(), 0.02f, ws.Span<float>());
        ws.RequiresGrad = true;
        var ht = Tensor.Randn([n, h], generator: new Generator(7));
        var wt = Tensor.Randn([v, h], generator: new Generator(8));
        TensorPrimitives.Multiply(wt.Span<float>(), 0.02f, wt.Span<float>());
        var o = new DivergenceOptions { Reduction = Reduction.BatchMean };
        var run = new BenchRun([n, h, v], () =>
        {
            using (var loss = FusedLinearDivergences.Jsd(hs, ws, ht, wt, 0.5, o)) loss.Backward();
            hs.Grad = null;
            ws.Grad = null;
        }) { Flops = 8.0 * n * h * v };
        foreach (var x in new[] { hs, ws, ht, wt }) run.Own(x);
        run.Extra["max_rel_error"] = Validate(hs, ws, ht, wt, o);
        return run;
    }

    /// <summary>
    /// The loss against the unfused float32 path on a slice of rows (full logits of 64 rows, composite JSD, the
    /// float64 reference of jsd-loss per row), and the chunked gradient of h for those rows against the unfused one.
    /// </summary>
    private static double Validate(Tensor hs, Tensor wsParameter, Tensor ht, Tensor wt, DivergenceOptions o)
    {
        using var ws = wsParameter.Detach(); // only h's gradient is checked: no [V, H] gradient buffers while validating
        long rows = Math.Min(64, hs.Size(0));
        using var hsr = hs.Narrow(0, 0, rows).Detach();
        using var htr = ht.Narrow(0, 0, rows).Detach();
        using var hsl = hsr.Clone().RequiresGrad_();
        double fused;
        float[] gFused;
        using (var loss = FusedLinearDivergences.Jsd(hsl, ws, htr, wt, 0.5, o)) { fused = loss.ToDouble(); loss.Backward(); }
        gFused = hsl.Grad!.ToArray<float>();
        // float64 reference from the float32 logits of these rows.
        double reference = 0;
        using (Tensor.NoGrad())
        using (var wsT = ws.T)
        using (var wtT = wt.T)
        using (var zs = hsr.MatMul(wsT))
        using (var zt = htr.MatMul(wtT))
        {
            for (long r = 0; r < rows; r++)
            {
                using var sr = zs.Select(0, r);
                using var tr = zt.Select(0, r);
                reference += DivergenceBenchValidation.JsdRow(sr.ToArray<float>(), tr.ToArray<float>(), 0.5).Item1;
            }
        }
        reference /= rows;
        double worst = Math.Abs(fused - reference) / Math.Abs(reference);
        using (var hsu = hsr.Clone().RequiresGrad_())
        {
            using (var loss = FusedLinearDivergences.Jsd(hsu, ws, htr, wt, 0.5, o with { Implementation = LossImplementation.Composite })) loss.Backward();
            var gUnfused = hsu.Grad!.ToArray<float>();
            double gmax = gUnfused.Max(Math.Abs);
            for (int i = 0; i < gUnfused.Length; i++) worst = Math.Max(worst, Math.Abs(gFused[i] - gUnfused[i]) / gmax);
        }
        if (!(worst <= 1e-4)) throw new BenchValidationException($"fused-linear-jsd: relative error {worst:g3} against the unfused reference exceeds 1e-4");
        return worst;
    }
}
