using Engine.Tensors;

namespace Engine.Benchmarks.Cases;

/// <summary>
/// <c>conv2d</c>: y = conv2d(x, w, padding 1) for x [256, 32, 28, 28], w [64, 32, 3, 3], then
/// y.Sum().Backward(): forward, backward-data and backward-weight (torch_bench.py's <c>conv2d</c>).
/// Flops: 3 × 2·N·Cout·outH·outW·Cin·kH·kW (each of the three passes is one such product), as the peer counts.
/// Validated before timing on sampled entries of y, dx and dw against float64 direct sums (on a device, the
/// device's results copied to the host).
/// </summary>
public sealed class Conv2d : BenchCase
{
    /// <inheritdoc />
    public override string Name => "conv2d";

    /// <inheritdoc />
    public override string Description => "conv2d [256,32,28,28] -> 64, 3x3, padding 1, forward + backward (data and weight)";

    /// <inheritdoc />
    public override string Target => "issue 6: >= 1.0x PyTorch (oneDNN)";

    /// <inheritdoc />
    public override bool RunsOnDevices => true;

    /// <inheritdoc />
    public override BenchRun Prepare(BenchOptions options)
    {
        long n = options.Tiny ? 2 : options.Quick ? 4 : 256, cin = options.Tiny ? 3 : options.Quick ? 8 : 32, hw = options.Tiny ? 6 : options.Quick ? 10 : 28,
            cout = options.Tiny ? 4 : options.Quick ? 16 : 64;
        const int k = 3;
        var device = options.Target;
        var x = device.Place(Tensor.Randn([n, cin, hw, hw], generator: new Generator(1)).RequiresGrad_());
        var w = device.Place(Tensor.Randn([cout, cin, k, k], generator: new Generator(2)).RequiresGrad_());
        void Step()
        {
            using (var y = x.Conv2d(w, padding: (1, 1)))
            using (var loss = y.Sum())
                loss.Backward();
            x.Grad = null;
            w.Grad = null;
        }
        var run = new BenchRun([n, cin, hw, hw, cout, k, k], Step) { Flops = 3.0 * 2 * n * cout * hw * hw * cin * k * k };
        run.Own(x);
        run.Own(w);
        run.Extra["max_rel_err"] = Validate(x, w);
        x.Grad = null;
        w.Grad = null;
        if (device.IsCpu) run.Extra["fma_peak_gflops"] = Math.Round(MachinePeak.FmaGflops(options.Threads, options.Quick), 1);
        return run;
    }

    /// <summary>
    /// Runs forward and backward once and checks 64 sampled entries each of y, dx and dw against float64
    /// sums (loss = Σy, so dy = 1: dx[n,c,i,j] = Σ w over the taps that read (i, j); dw[o,c,ky,kx] = Σ x over
    /// the positions that tap reads). Errors are relative to the sum of absolute terms; limit 1e-5.
    /// </summary>
    private static double Validate(Tensor x, Tensor w)
    {
        long n = x.Size(0), cin = x.Size(1), h = x.Size(2), wd = x.Size(3), cout = w.Size(0);
        const int k = 3, pad = 1;
        using var y = x.Conv2d(w, padding: (1, 1));
        using (var loss = y.Sum()) loss.Backward();
        // Host copies (the tensors may live on a device).
        float[] px = x.ToArray<float>(), pw = w.ToArray<float>(), py = y.ToArray<float>(), pdx = x.Grad!.ToArray<float>(), pdw = w.Grad!.ToArray<float>();
        var rng = new Random(4);
        double worst = 0;
        void Check(string what, double got, double want, double abs)
        {
            double e = Math.Abs(got - want) / Math.Max(abs, 1e-30);
            worst = Math.Max(worst, e);
            if (!(e <= 1e-5)) throw new BenchValidationException($"conv2d: {what} = {got}, float64 reference {want} (relative error {e:g3} > 1e-5)");
        }
        for (int s = 0; s < 64; s++)
        {
            long b = rng.NextInt64(n), o = rng.NextInt64(cout), oy = rng.NextInt64(h), ox = rng.NextInt64(wd), c = rng.NextInt64(cin);
            double sum = 0, abs = 0;
            for (long ci = 0; ci < cin; ci++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                    {
                        long iy = oy - pad + ky, ix = ox - pad + kx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                        double t = (double)px[((b * cin + ci) * h + iy) * wd + ix] * pw[((o * cin + ci) * k + ky) * k + kx];
                        sum += t; abs += Math.Abs(t);
                    }
            Check($"y[{b},{o},{oy},{ox}]", py[((b * cout + o) * h + oy) * wd + ox], sum, abs);

            sum = 0; abs = 0;
            for (long co = 0; co < cout; co++)
                for (int ky = 0; ky < k; ky++)
                    for (int kx = 0; kx < k; kx++)
                    {
                        long yy = oy + pad - ky, yx = ox + pad - kx; // output position whose tap (ky, kx) reads (oy, ox)
                        if (yy < 0 || yy >= h || yx < 0 || yx >= wd) continue;
                        double t = pw[((co * cin + c) * k + ky) * k + kx];
                        sum += t; abs += Math.Abs(t);
                    }
            Check($"dx[{b},{c},{oy},{ox}]", pdx[((b * cin + c) * h + oy) * wd + ox], sum, abs);

            int tky = rng.Next(k), tkx = rng.Next(k);
            sum = 0; abs = 0;
            for (long bb = 0; bb < n; bb++)
                for (long yy = 0; yy < h; yy++)
                    for (long yx = 0; yx < wd; yx++)
                    {
                        long iy = yy - pad + tky, ix = yx - pad + tkx;
                        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                        double t = px[((bb * cin + c) * h + iy) * wd + ix];
                        sum += t; abs += Math.Abs(t);
                    }
            Check($"dw[{o},{c},{tky},{tkx}]", pdw[((o * cin + c) * k + tky) * k + tkx], sum, abs);
        }
        return worst;
    }
}
