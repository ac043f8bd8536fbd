using Engine.Distillation;
using Engine.Tensors;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>jsd-loss</c>: generalized JSD with β = 0.5, M = βp + (1−β)q, T = 1, summed over rows and divided by n
/// (batchmean), forward + backward wrt the student, [2048, 32000] (torch_bench.py's <c>jsd_loss</c>). Runs the
/// fused form (<see cref="Divergences.Jsd"/>). Memory floor: read s and t once, write ∂L/∂s once = 12 bytes per element.
/// </summary>
public sealed class JsdLoss : BenchCase
{
    /// <inheritdoc />
    public override string Name => "jsd-loss";

    /// <inheritdoc />
    public override string Description => "batchmean JSD_0.5(softmax(t) || softmax(s)) over [2048, 32000], forward + backward";

    /// <inheritdoc />
    public override string Target => "issue 5: >= 20x faster than PyTorch";

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long n = options.Tiny ? 4 : options.Quick ? 64 : 2048, v = options.Tiny ? 67 : options.Quick ? 1000 : 32000;
        const double beta = 0.5;
        var o = new DivergenceOptions { Reduction = Reduction.BatchMean };
        var device = options.Target;
        var s = device.Place(Tensor.Randn([n, v], generator: new Generator(3)).RequiresGrad_());
        var t = device.Place(Tensor.Randn([n, v], generator: new Generator(4)));
        var run = new BenchRun([n, v], () =>
        {
            using (var loss = Divergences.Jsd(s, t, beta, o)) loss.Backward();
            s.Grad = null;
        }) { Bytes = 12.0 * n * v };
        run.Own(s);
        run.Own(t);
        run.Extra["beta"] = beta;
        run.Extra["max_rel_error"] = DivergenceBenchValidation.Check(Name, s, t, o, (a, b, x) => Divergences.Jsd(a, b, beta, x),
            (sr, tr, _) => DivergenceBenchValidation.JsdRow(sr, tr, beta));
        return run;
    }
}
