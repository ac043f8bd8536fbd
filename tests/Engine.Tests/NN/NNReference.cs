namespace Engine.Tests.NN;

/// <summary>Plain-loop float64 references for the conv and pooling ops (NCHW, row-major double[]).</summary>
internal static class NNReference
{
    public static long OutSize(long n, int k, int s, int p, int d) => (n + 2 * p - d * (k - 1) - 1) / s + 1;

    /// <summary>conv2d: x [N, C, H, W], w [O, C/g, kh, kw], b [O] or null.</summary>
    public static double[] Conv2d(double[] x, long[] xs, double[] w, long[] ws, double[]? b,
        (int H, int W) s, (int H, int W) p, (int H, int W) d, int groups, out long[] outShape)
    {
        long n = xs[0], c = xs[1], h = xs[2], wd = xs[3];
        long o = ws[0], cpg = ws[1], kh = ws[2], kw = ws[3];
        long oh = OutSize(h, (int)kh, s.H, p.H, d.H), ow = OutSize(wd, (int)kw, s.W, p.W, d.W);
        outShape = [n, o, oh, ow];
        var y = new double[n * o * oh * ow];
        long opg = o / groups;
        for (long bi = 0; bi < n; bi++)
            for (long oc = 0; oc < o; oc++)
            {
                long g = oc / opg;
                for (long oy = 0; oy < oh; oy++)
                    for (long ox = 0; ox < ow; ox++)
                    {
                        double acc = b is null ? 0 : b[oc];
                        for (long ci = 0; ci < cpg; ci++)
                        {
                            long ic = g * cpg + ci;
                            for (long i = 0; i < kh; i++)
                                for (long j = 0; j < kw; j++)
                                {
                                    long iy = oy * s.H - p.H + i * d.H, ix = ox * s.W - p.W + j * d.W;
                                    if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
                                    acc += x[((bi * c + ic) * h + iy) * wd + ix] * w[((oc * cpg + ci) * kh + i) * kw + j];
                                }
                        }
                        y[((bi * o + oc) * oh + oy) * ow + ox] = acc;
                    }
            }
        return y;
    }

    /// <summary>im2col: [N, C·kh·kw, L].</summary>
    public static double[] Unfold(double[] x, long[] xs, (int H, int W) k, (int H, int W) s, (int H, int W) p, (int H, int W) d, out long[] outShape)
    {
        long n = xs[0], c = xs[1], h = xs[2], w = xs[3];
        long oh = OutSize(h, k.H, s.H, p.H, d.H), ow = OutSize(w, k.W, s.W, p.W, d.W), l = oh * ow;
        long rows = c * k.H * k.W;
        outShape = [n, rows, l];
        var y = new double[n * rows * l];
        for (long bi = 0; bi < n; bi++)
            for (long ci = 0; ci < c; ci++)
                for (long i = 0; i < k.H; i++)
                    for (long j = 0; j < k.W; j++)
                        for (long oy = 0; oy < oh; oy++)
                            for (long ox = 0; ox < ow; ox++)
                            {
                                long iy = oy * s.H - p.H + i * d.H, ix = ox * s.W - p.W + j * d.W;
                                long r = (ci * k.H + i) * k.W + j;
                                y[(bi * rows + r) * l + oy * ow + ox] =
                                    iy < 0 || iy >= h || ix < 0 || ix >= w ? 0 : x[((bi * c + ci) * h + iy) * w + ix];
                            }
        return y;
    }

    /// <summary>col2im: cols [N, C·kh·kw, L] → [N, C, h, w].</summary>
    public static double[] Fold(double[] cols, long n, long c, long h, long w, (int H, int W) k, (int H, int W) s, (int H, int W) p, (int H, int W) d)
    {
        long oh = OutSize(h, k.H, s.H, p.H, d.H), ow = OutSize(w, k.W, s.W, p.W, d.W), l = oh * ow;
        long rows = c * k.H * k.W;
        var y = new double[n * c * h * w];
        for (long bi = 0; bi < n; bi++)
            for (long ci = 0; ci < c; ci++)
                for (long i = 0; i < k.H; i++)
                    for (long j = 0; j < k.W; j++)
                        for (long oy = 0; oy < oh; oy++)
                            for (long ox = 0; ox < ow; ox++)
                            {
                                long iy = oy * s.H - p.H + i * d.H, ix = ox * s.W - p.W + j * d.W;
                                if (iy < 0 || iy >= h || ix < 0 || ix >= w) continue;
                                long r = (ci * k.H + i) * k.W + j;
                                y[((bi * c + ci) * h + iy) * w + ix] += cols[(bi * rows + r) * l + oy * ow + ox];
                            }
        return y;
    }

    /// <summary>Max pooling: values and flat in-plane argmax indices (first maximum wins).</summary>
    public static (double[] Values, long[] Indices) MaxPool(double[] x, long[] xs, (int H, int W) k, (int H, int W) s, (int H, int W) p, (int H, int W) d, out long[] outShape)
    {
        long planes = xs[0] * xs[1], h = xs[2], w = xs[3];
        long oh = OutSize(h, k.H, s.H, p.H, d.H), ow = OutSize(w, k.W, s.W, p.W, d.W);
        outShape = [xs[0], xs[1], oh, ow];
        var v = new double[planes * oh * ow];
        var ix = new long[planes * oh * ow];
        for (long pl = 0; pl < planes; pl++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                {
                    double best = double.NegativeInfinity;
                    long bi = -1;
                    for (long i = 0; i < k.H; i++)
                        for (long j = 0; j < k.W; j++)
                        {
                            long yy = oy * s.H - p.H + i * d.H, xx = ox * s.W - p.W + j * d.W;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                            double val = x[pl * h * w + yy * w + xx];
                            if (bi < 0 || val > best) { best = val; bi = yy * w + xx; }
                        }
                    v[(pl * oh + oy) * ow + ox] = best;
                    ix[(pl * oh + oy) * ow + ox] = bi;
                }
        return (v, ix);
    }

    /// <summary>Average pooling over the zero-padded input.</summary>
    public static double[] AvgPool(double[] x, long[] xs, (int H, int W) k, (int H, int W) s, (int H, int W) p, bool countIncludePad, out long[] outShape)
    {
        long planes = xs[0] * xs[1], h = xs[2], w = xs[3];
        long oh = OutSize(h, k.H, s.H, p.H, 1), ow = OutSize(w, k.W, s.W, p.W, 1);
        outShape = [xs[0], xs[1], oh, ow];
        var y = new double[planes * oh * ow];
        for (long pl = 0; pl < planes; pl++)
            for (long oy = 0; oy < oh; oy++)
                for (long ox = 0; ox < ow; ox++)
                {
                    double sum = 0;
                    long count = 0;
                    for (long i = 0; i < k.H; i++)
                        for (long j = 0; j < k.W; j++)
                        {
                            long yy = oy * s.H - p.H + i, xx = ox * s.W - p.W + j;
                            if (yy < 0 || yy >= h || xx < 0 || xx >= w) continue;
                            sum += x[pl * h * w + yy * w + xx];
                            count++;
                        }
                    y[(pl * oh + oy) * ow + ox] = sum / (countIncludePad ? k.H * k.W : count);
                }
        return y;
    }

    /// <summary>Adaptive average pooling with torch's windows [floor(i·H/oH), ceil((i+1)·H/oH)).</summary>
    public static double[] AdaptiveAvgPool(double[] x, long[] xs, long oh, long ow)
    {
        long planes = xs[0] * xs[1], h = xs[2], w = xs[3];
        var y = new double[planes * oh * ow];
        for (long pl = 0; pl < planes; pl++)
            for (long i = 0; i < oh; i++)
                for (long j = 0; j < ow; j++)
                {
                    long y0 = (long)Math.Floor((double)i * h / oh), y1 = (long)Math.Ceiling((double)(i + 1) * h / oh);
                    long x0 = (long)Math.Floor((double)j * w / ow), x1 = (long)Math.Ceiling((double)(j + 1) * w / ow);
                    double sum = 0;
                    for (long yy = y0; yy < y1; yy++)
                        for (long xx = x0; xx < x1; xx++) sum += x[pl * h * w + yy * w + xx];
                    y[(pl * oh + i) * ow + j] = sum / ((y1 - y0) * (x1 - x0));
                }
        return y;
    }
}
