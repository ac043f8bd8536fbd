using Engine.Tensors;
using Engine.Tensors.NN;

namespace Engine.Distillation.Methods;

/// <summary>
/// The feature and relation losses of FitNets, attention transfer and relational KD, composed from
/// differentiable tensor ops (so gradients of any order flow to both arguments), with the exact
/// definitions of mdistiller (see ../shared/LOSSES.md). Every function computes in its inputs' dtype.
/// </summary>
public static class FeatureLosses
{
    /// <summary>The ε of torch's <c>F.normalize</c> and of mdistiller's pairwise distances.</summary>
    public const double Eps = 1e-12;

    /// <summary>
    /// Mean squared error over all elements: <c>mean((a − b)²)</c> (torch's <c>F.mse_loss</c>, reduction mean).
    /// Gradient wrt a: 2(a − b)/numel.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes differ (the message names "mse_loss").</exception>
    public static Tensor Mse(Tensor a, Tensor b)
    {
        SameShape("mse_loss", a, b);
        using var scope = Tensor.NewDisposeScope();
        var d = a - b;
        return (d * d).Mean().MoveToOuterDisposeScope(); // d·d rather than Pow(2): the same value and gradient, and mul has device kernels (pow has none)
    }

    /// <summary>
    /// Smooth-L1 (Huber with β = 1) averaged over all elements, as torch's <c>F.smooth_l1_loss</c>:
    /// per element x = a − b: 0.5·x² if |x| &lt; 1, else |x| − 0.5. Written as
    /// <c>0.5·m² + |x| − m</c> with <c>m = min(|x|, 1)</c> (the same function, no branch); the gradient
    /// is x inside [−1, 1] and sign(x) outside, and exactly 0 at x = 0.
    /// </summary>
    /// <exception cref="ArgumentException">Shapes differ (the message names "smooth_l1_loss").</exception>
    public static Tensor SmoothL1(Tensor a, Tensor b)
    {
        SameShape("smooth_l1_loss", a, b);
        using var scope = Tensor.NewDisposeScope();
        // |a − b| as where(d < 0, −d, d): the same values, and the same gradient wherever it matters (at d = 0 the
        // total gradient is 0 either way, see above); comparisons, neg and where have device kernels, abs has none.
        var d = a - b;
        var x = Tensor.Where(d.Lt(0.0), d.Neg(), d);
        var m = AtMost(x, 1.0);
        return (m * m * 0.5 + x - m).Mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// L2-normalizes <paramref name="x"/> along <paramref name="dim"/> as torch's <c>F.normalize</c>:
    /// <c>x / max(‖x‖₂, ε)</c>, ε = 1e-12. Computed as <c>x · rsqrt(max(Σx², ε²))</c>, so a zero
    /// vector maps to zero with a finite gradient (the square root is never taken of 0).
    /// </summary>
    public static Tensor Normalize(Tensor x, int dim)
    {
        ArgumentNullException.ThrowIfNull(x);
        using var scope = Tensor.NewDisposeScope();
        var sq = (x * x).Sum(dim, keepDim: true);
        return (x * AtLeast(sq, Eps * Eps).Rsqrt()).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// The attention map of a feature map F [N, C, H, W] (Zagoruyko and Komodakis 2017, as mdistiller):
    /// <c>a(F) = normalize(mean_c(F^p).reshape(N, H·W))</c>, a [N, H·W] row-normalized.
    /// </summary>
    /// <exception cref="ArgumentException">F is not 4-d (the message names "attention_map").</exception>
    public static Tensor AttentionMap(Tensor feature, double p = 2)
    {
        ArgumentNullException.ThrowIfNull(feature);
        if (feature.Rank != 4)
            throw new ArgumentException($"attention_map: expected a feature map [N, C, H, W]; got {Util.Format(feature.Shape)}.");
        using var scope = Tensor.NewDisposeScope();
        var a = (p == 2 ? feature * feature : feature.Pow(p)).Mean(1).Reshape(feature.Size(0), -1); // p = 2 as a product: device kernels
        return Normalize(a, 1).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// One stage of attention transfer: <c>mean((a(F_s) − a(F_t))²)</c> over the batch and the H·W
    /// positions, where the larger of the two maps is first reduced to the smaller's height and width by
    /// adaptive average pooling (mdistiller's <c>single_stage_at_loss</c>; it compares heights, we pool to
    /// the smaller of each of H and W). Channels may differ (the map averages them out).
    /// </summary>
    /// <exception cref="ArgumentException">Not 4-d maps of the same batch size (the message names "attention_transfer").</exception>
    public static Tensor AttentionTransfer(Tensor studentFeature, Tensor teacherFeature, double p = 2)
    {
        ArgumentNullException.ThrowIfNull(studentFeature);
        ArgumentNullException.ThrowIfNull(teacherFeature);
        if (studentFeature.Rank != 4 || teacherFeature.Rank != 4 || studentFeature.Size(0) != teacherFeature.Size(0))
            throw new ArgumentException($"attention_transfer: expected feature maps [N, C, H, W] with the same N; got student {Util.Format(studentFeature.Shape)} and teacher {Util.Format(teacherFeature.Shape)}.");
        using var scope = Tensor.NewDisposeScope();
        long h = Math.Min(studentFeature.Size(2), teacherFeature.Size(2)), w = Math.Min(studentFeature.Size(3), teacherFeature.Size(3));
        var fs = PoolTo(studentFeature, h, w);
        var ft = PoolTo(teacherFeature, h, w);
        var d = AttentionMap(fs, p) - AttentionMap(ft, p);
        return (d * d).Mean().MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Adaptive average pooling of a [N, C, H, W] map to [N, C, h, w] (an alias when it already has that size).
    /// </summary>
    public static Tensor PoolTo(Tensor feature, long h, long w)
    {
        ArgumentNullException.ThrowIfNull(feature);
        return feature.Size(2) == h && feature.Size(3) == w ? feature.View(feature.ShapeArray()) : feature.AdaptiveAvgPool2d(h, w);
    }

    /// <summary>
    /// Pairwise Euclidean distances of the rows of e [B, D] as mdistiller's <c>_pdist</c>:
    /// <c>d_ij = sqrt(max(‖e_i‖² + ‖e_j‖² − 2 e_i·e_j, ε))</c> off the diagonal and 0 on it
    /// (ε = 1e-12; the Gram form, one B×D×B product, no B×B×D difference tensor).
    /// </summary>
    public static Tensor PairwiseDistances(Tensor e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e.Rank != 2) throw new ArgumentException($"pairwise_distances: expected embeddings [B, D]; got {Util.Format(e.Shape)}.");
        using var scope = Tensor.NewDisposeScope();
        long b = e.Size(0);
        var sq = (e * e).Sum(1);
        var gram = e.MatMul(e.Transpose(0, 1));
        var d2 = sq.Unsqueeze(1) + sq.Unsqueeze(0) - gram * 2.0;
        return (AtLeast(d2, Eps).Sqrt() * OffDiagonal(b, e.DType, e.Device)).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// RKD's distance term (Park et al. 2019, as mdistiller): each model's pairwise distances divided by
    /// their mean over the positive entries, compared by <see cref="SmoothL1"/> (mean over the B² pairs):
    /// <code>
    /// d_s = pdist(e_s) / mean(pdist(e_s)[pdist(e_s) &gt; 0]);   d_t likewise;   L_D = smooth_l1(d_s, d_t)
    /// </code>
    /// The mean is the sum of the positive entries over their count (the count is a constant, as torch's
    /// boolean indexing). Embeddings may have different widths; the batch sizes must match.
    /// </summary>
    public static Tensor RkdDistance(Tensor studentEmbedding, Tensor teacherEmbedding)
    {
        CheckEmbeddings("rkd_distance", studentEmbedding, teacherEmbedding);
        using var scope = Tensor.NewDisposeScope();
        return SmoothL1(NormalizedDistances(studentEmbedding), NormalizedDistances(teacherEmbedding)).MoveToOuterDisposeScope();
    }

    private static Tensor NormalizedDistances(Tensor e)
    {
        var d = PairwiseDistances(e);
        Tensor positive;
        using (Tensor.NoGrad()) positive = d.Gt(0).To(d.DType);
        var count = positive.Sum();
        var mean = (d * positive).Sum() / AtLeast(count, 1.0);
        return d / mean;
    }

    /// <summary>
    /// RKD's angle term: for every anchor i and pair (j, k), the cosine of the angle at e_i,
    /// <c>cos_ijk = n_ij · n_ik</c> with <c>n_ij = normalize(e_j − e_i)</c> (n_ii = 0), compared by
    /// <see cref="SmoothL1"/> over the B³ triples (mdistiller's bmm form).
    /// <para>
    /// Computed from the Gram matrix G = e·eᵀ instead of the B×B×D difference tensor:
    /// <c>(e_j − e_i)·(e_k − e_i) = G_jk − G_ij − G_ik + G_ii</c> and <c>‖e_j − e_i‖² = G_ii + G_jj − 2G_ij</c>,
    /// so memory is B³ instead of B²·D and the cost one B×D×B product. The same numbers up to rounding;
    /// the terms with j = i or k = i are set to 0 by a mask (where torch's normalized zero vector gives 0),
    /// and the cosine is clamped to [−1, 1] against rounding (Cauchy–Schwarz holds exactly only in exact
    /// arithmetic; near-duplicate rows would otherwise amplify the Gram form's cancellation error).
    /// </para>
    /// </summary>
    public static Tensor RkdAngle(Tensor studentEmbedding, Tensor teacherEmbedding)
    {
        CheckEmbeddings("rkd_angle", studentEmbedding, teacherEmbedding);
        using var scope = Tensor.NewDisposeScope();
        return SmoothL1(Angles(studentEmbedding), Angles(teacherEmbedding)).MoveToOuterDisposeScope();
    }

    /// <summary>The cosines cos_ijk [B, B, B] of <see cref="RkdAngle"/> (index order i = anchor, j, k).</summary>
    public static Tensor Angles(Tensor e)
    {
        ArgumentNullException.ThrowIfNull(e);
        if (e.Rank != 2) throw new ArgumentException($"rkd_angle: expected embeddings [B, D]; got {Util.Format(e.Shape)}.");
        using var scope = Tensor.NewDisposeScope();
        long b = e.Size(0);
        var gram = e.MatMul(e.Transpose(0, 1));                  // G_jk
        var sq = (e * e).Sum(1);                                // G_ii
        var d2 = AtLeast(sq.Unsqueeze(1) + sq.Unsqueeze(0) - gram * 2.0, 0.0);
        var inv = AtLeast(d2, Eps * Eps).Rsqrt() * OffDiagonal(b, e.DType, e.Device);   // 1/‖e_j − e_i‖, 0 for j = i
        var dot = gram.Unsqueeze(0) - gram.Unsqueeze(2) - gram.Unsqueeze(1) + sq.Reshape(b, 1, 1);
        var cos = dot * inv.Unsqueeze(2) * inv.Unsqueeze(1);
        return AtMost(AtLeast(cos, -1.0), 1.0).MoveToOuterDisposeScope();
    }

    /// <summary>RKD: <c>distanceWeight·L_D + angleWeight·L_A</c> (25 and 50 by default, as the paper and mdistiller).</summary>
    public static Tensor Rkd(Tensor studentEmbedding, Tensor teacherEmbedding, double distanceWeight = 25, double angleWeight = 50)
    {
        using var scope = Tensor.NewDisposeScope();
        var loss = RkdDistance(studentEmbedding, teacherEmbedding) * distanceWeight + RkdAngle(studentEmbedding, teacherEmbedding) * angleWeight;
        return loss.MoveToOuterDisposeScope();
    }

    /// <summary>
    /// Cross-entropy against soft targets: <c>−(1/B)·Σ_i Σ_c target_ic · log_softmax(z_i / T)_c</c>
    /// (PS-KD's and defensive distillation's loss; T = 1 unless given). The targets are used as given
    /// (no gradient flows into them when they do not require grad).
    /// </summary>
    /// <exception cref="ArgumentException">Shapes differ or are not [B, C] (the message names "soft_cross_entropy").</exception>
    public static Tensor SoftCrossEntropy(Tensor logits, Tensor targets, double temperature = 1)
    {
        SameShape("soft_cross_entropy", logits, targets);
        if (logits.Rank != 2) throw new ArgumentException($"soft_cross_entropy: expected [B, C]; got {Util.Format(logits.Shape)}.");
        using var scope = Tensor.NewDisposeScope();
        var lp = logits.LogSoftmax(1, temperature);
        return ((targets * lp).Sum() * (-1.0 / Math.Max(1, logits.Size(0)))).MoveToOuterDisposeScope();
    }

    /// <summary>
    /// max(x, c) as where(x &lt; c, c, x), and min(x, c) as where(x &gt; c, c, x): the same values, the gradient to x
    /// where x is kept (at an exact tie it goes to x whole). Written with comparisons and where, which have device
    /// kernels (maximum, minimum and clamp have none yet), so the feature losses run on every device.
    /// </summary>
    private static Tensor AtLeast(Tensor x, double c) => Tensor.Where(x.Lt(c), c, x);

    private static Tensor AtMost(Tensor x, double c) => Tensor.Where(x.Gt(c), c, x);

    private static Tensor OffDiagonal(long b, DType dtype, Engine.Runtime.Device device)
    {
        var m = new double[b * b];
        for (long i = 0; i < b; i++)
            for (long j = 0; j < b; j++) m[i * b + j] = i == j ? 0 : 1;
        var t = Tensor.FromArray(m, b, b);
        if (dtype != DType.Float64)
        {
            var converted = t.To(dtype);
            t.Dispose();
            t = converted;
        }
        if (device.Type == Engine.Runtime.DeviceType.Cpu) return t;
        using (t) return t.To(device);
    }

    private static void SameShape(string op, Tensor a, Tensor b)
    {
        ArgumentNullException.ThrowIfNull(a);
        ArgumentNullException.ThrowIfNull(b);
        if (!a.Shape.SequenceEqual(b.Shape) || a.DType != b.DType)
            throw new ArgumentException($"{op}: expected two tensors of one shape and dtype; got {a.DType.Name()} {Util.Format(a.Shape)} and {b.DType.Name()} {Util.Format(b.Shape)}.");
    }

    private static void CheckEmbeddings(string op, Tensor s, Tensor t)
    {
        ArgumentNullException.ThrowIfNull(s);
        ArgumentNullException.ThrowIfNull(t);
        if (s.Rank != 2 || t.Rank != 2 || s.Size(0) != t.Size(0) || s.DType != t.DType)
            throw new ArgumentException($"{op}: expected student and teacher embeddings [B, D_s] and [B, D_t] of one dtype; got {s.DType.Name()} {Util.Format(s.Shape)} and {t.DType.Name()} {Util.Format(t.Shape)}.");
    }
}
