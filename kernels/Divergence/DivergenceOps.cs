// The per-class math of the fused divergence kernels (DivergenceKernels.cs): one operator struct per
// divergence D(p, q) between the teacher's p = softmax(t/T) and the student's q = softmax(s/T).
//
// Each op gives, for one class j, from log p_j, log q_j, p_j, q_j and the row's parameter (β, λ or α):
//   Loss    ℓ_j, with D = Σ_j ℓ_j
//   Weight  u_j = ∂D/∂(log q_j) = q_j·∂D/∂q_j, treating q as free (not constrained to sum to 1).
// The kernel turns the weights into the gradient with respect to the scaled student logits a = s/T
// by the softmax Jacobian:  ∂D/∂a_j = u_j − q_j·Σ_k u_k  (and ∂D/∂s_j = that / T). Ops whose Σ_k u_k
// is a constant (forward KL: Σ −p_k = −1) say so, and the kernel saves the pass that sums it.
//
// Per class (M the mixture of the op; "p>0 ?" terms are 0 where the probability is 0, the 0·log 0 = 0
// convention):
//   ForwardKL       KL(p‖q)           ℓ = p·(log p − log q)                        u = −p              (Σu = −1)
//   ReverseKL       KL(q‖p)           ℓ = q·(log q − log p)                        u = ℓ + q
//   JensenShannon   JSD_β, M = βp + (1−β)q, 0 < β < 1:
//                                     ℓ = β·p·(log p − log M) + (1−β)·q·(log q − log M)
//                                     u = (1−β)·q·(log q − log M)   (Liger's dX before the softmax Jacobian)
//   TotalVariation  ½·Σ|p − q|        ℓ = ½·|p − q|                                u = ½·q·sign(q − p) (subgradient 0 at p = q)
//   SkewKL          KL(p‖M), M = λp + (1−λ)q:
//                                     ℓ = p·(log p − log M)                        u = −(1−λ)·p·q/M
//   SkewReverseKL   KL(q‖M), M = (1−λ)p + λq:
//                                     ℓ = q·(log q − log M)                        u = ℓ + q·(1 − λ·q/M)
//   Alpha           D_α = (1 − Σ p^α q^(1−α)) / (α(1−α)), α ∉ {0, 1}; with w = p^α q^(1−α):
//                                     ℓ = (α·(p − w) + (1−α)·(q − w)) / (α(1−α))   u = −w/α
//                   Σ_j ℓ_j equals D_α because Σp = Σq = 1; each ℓ_j is ≥ 0 (weighted AM–GM for
//                   0 < α < 1, the reverse inequality and a negative α(1−α) outside), so the row sum
//                   adds non-negative terms, and ℓ_j is exactly 0 where p_j = q_j.
//   BalancedKL      BD-KD, w·KL(p‖q) + (1−w)·KL(q‖p), w ∈ [0, 1] the row's weight (per row: the kernel's `parameters`):
//                                     ℓ = w·p·(log p − log q) + (1−w)·q·(log q − log p)
//                                     u = −w·p + (1−w)·(q·(log q − log p) + q)
//                   A side whose weight is 0 is dropped, not multiplied (w = 1 with p = 0 < q would give 0·∞).
//
// Numerics  log M is computed by LogMix from log p and log q (never from p and q, which underflow):
//           with d = log a − log b, log(w·a + (1−w)·b) = log a + log1p((1−w)·expm1(−d)) for d ≥ 0 and
//           log b + log1p(w·expm1(d)) otherwise, so the exponent never overflows, log M is exact
//           (= log p) where p = q, and JSD/skew terms vanish exactly for teacher = student. Weights
//           0 and 1 return the one side exactly. Alpha's w = exp(log p + (1−α)(log q − log p)) from
//           the larger side (exp(log q + α(log p − log q)) otherwise): w = p exactly where p = q.
//           Special values: a class with log p = log q = −∞ (masked in both logits) is skipped by the
//           kernel (all terms 0); underflowed probabilities (finite logs) are not skipped. A class with mass on one side only gives what the math gives: KL(p‖q) = +∞
//           where q = 0 < p, KL(q‖p) = +∞ where p = 0 < q; JSD, TV, skew KL (λ > 0) and α ∈ (0, 1)
//           stay finite.
using Engine.Runtime.Kernels;

namespace Engine.Tensors.Kernels;

/// <summary>One class's contribution to a divergence: its loss term and its weight ∂D/∂(log q_j).</summary>
internal struct DivergenceTerm
{
    /// <summary>ℓ_j: the row's divergence is Σ_j ℓ_j.</summary>
    public float Loss;

    /// <summary>u_j = ∂D/∂(log q_j) with q free; the logit gradient is u_j − q_j·Σ_k u_k.</summary>
    public float Weight;
}

/// <summary>A divergence's per-class math (see DivergenceOps.cs).</summary>
internal interface IDivergenceOp
{
    /// <summary>True when Σ_k u_k is the constant <see cref="WeightSum"/> (the kernel then skips summing it).</summary>
    static abstract bool HasFixedWeightSum();

    /// <summary>Σ_k u_k when <see cref="HasFixedWeightSum"/> (unused otherwise).</summary>
    static abstract float WeightSum();

    /// <summary>ℓ_j and u_j of one class from log p, log q, p = exp(log p), q = exp(log q) and the op's parameter.</summary>
    static abstract DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter);
}

/// <summary>Helpers of the divergence ops.</summary>
internal static class DivergenceMath
{
    /// <summary>
    /// log(w·a + (1−w)·b) from log a and log b, for 0 ≤ w ≤ 1, without overflow and exact when a = b
    /// (see the file header). Callers do not pass a = b = 0 (the kernel skips such classes).
    /// </summary>
    [KernelFunction]
    public static float LogMix(float logA, float logB, float w)
    {
        if (w >= 1f) return logA;
        if (w <= 0f) return logB;
        float d = logA - logB;
        if (d >= 0f) return logA + float.LogP1((1f - w) * float.ExpM1(-d));
        return logB + float.LogP1(w * float.ExpM1(d));
    }

    /// <summary>log(e^a + e^b), exact when either side is −∞ (then the other is returned as is).</summary>
    [KernelFunction]
    public static float LogAddExp(float a, float b)
    {
        if (a == float.NegativeInfinity) return b;
        if (b == float.NegativeInfinity) return a;
        float hi = XMath.Max(a, b), lo = XMath.Min(a, b);
        return hi + float.LogP1(XMath.Exp(lo - hi));
    }
}

/// <summary>Forward KL(p‖q): ℓ = p·(log p − log q), u = −p, Σu = −1 (gradient q − p).</summary>
internal readonly struct ForwardKLOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => true;

    /// <inheritdoc />
    public static float WeightSum() => -1f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
        => new DivergenceTerm { Loss = p > 0f ? p * (logP - logQ) : 0f, Weight = -p };
}

/// <summary>Reverse KL(q‖p): ℓ = q·(log q − log p), u = ℓ + q (gradient q·(log q − log p − KL)).</summary>
internal readonly struct ReverseKLOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float loss = q > 0f ? q * (logQ - logP) : 0f;
        return new DivergenceTerm { Loss = loss, Weight = loss + q };
    }
}

/// <summary>Generalized JSD_β, 0 &lt; β &lt; 1 (parameter β): M = βp + (1−β)q, ℓ = β·p·(log p − log M) + (1−β)·q·(log q − log M), u = (1−β)·q·(log q − log M).</summary>
internal readonly struct JensenShannonOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float logM = DivergenceMath.LogMix(logP, logQ, parameter);
        float teacherPart = p > 0f ? p * (logP - logM) : 0f;
        float studentPart = q > 0f ? q * (logQ - logM) : 0f;
        float studentWeight = 1f - parameter;
        return new DivergenceTerm { Loss = parameter * teacherPart + studentWeight * studentPart, Weight = studentWeight * studentPart };
    }
}

/// <summary>Total variation ½·Σ|p − q|: ℓ = ½·|p − q|, u = ½·q·sign(q − p).</summary>
internal readonly struct TotalVariationOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float sign = q > p ? 0.5f : q < p ? -0.5f : 0f;
        return new DivergenceTerm { Loss = 0.5f * XMath.Abs(p - q), Weight = sign * q };
    }
}

/// <summary>Skew KL(p‖M), M = λp + (1−λ)q (parameter λ): ℓ = p·(log p − log M), u = −(1−λ)·p·q/M.</summary>
internal readonly struct SkewKLOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float logM = DivergenceMath.LogMix(logP, logQ, parameter);
        float loss = p > 0f ? p * (logP - logM) : 0f;
        // p·q/M in one exp of logs: q/M stays ≤ 1/(1−λ) where q underflows (at λ = 0 it is exactly 1:
        // u = −p), and at λ = 1 (M = p) it is exactly 0·q, never 0·∞.
        float weight = -(1f - parameter) * XMath.Exp(logP + logQ - logM);
        return new DivergenceTerm { Loss = loss, Weight = weight };
    }
}

/// <summary>Skew reverse KL(q‖M), M = (1−λ)p + λq (parameter λ): ℓ = q·(log q − log M), u = ℓ + q·(1 − λ·q/M).</summary>
internal readonly struct SkewReverseKLOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float logM = DivergenceMath.LogMix(logP, logQ, 1f - parameter);
        float loss = q > 0f ? q * (logQ - logM) : 0f;
        float weight = q > 0f ? loss + q * (1f - parameter * XMath.Exp(logQ - logM)) : 0f;
        return new DivergenceTerm { Loss = loss, Weight = weight };
    }
}

/// <summary>Amari α-divergence, α ∉ {0, 1} (parameter α): w = p^α·q^(1−α), ℓ = (α(p − w) + (1−α)(q − w))/(α(1−α)), u = −w/α.</summary>
internal readonly struct AlphaOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float alpha = parameter, beta = 1f - parameter;
        // One exp from the larger side: exactly p where log p = log q, and never 0·∞ where both underflow.
        float w = logP >= logQ ? XMath.Exp(logP + beta * (logQ - logP)) : XMath.Exp(logQ + alpha * (logP - logQ));
        // w = +∞ (α ∉ [0, 1] with one side underflowed): D = +∞ whatever the sign of α(1−α); the
        // difference form would give ∞ − ∞.
        float loss = w == float.PositiveInfinity ? w : (alpha * (p - w) + beta * (q - w)) / (alpha * beta);
        return new DivergenceTerm { Loss = loss, Weight = -w / alpha };
    }
}

/// <summary>BD-KD's balanced KL, w·KL(p‖q) + (1−w)·KL(q‖p) (parameter w ∈ [0, 1], per row): u = −w·p + (1−w)·(ℓ_rev + q).</summary>
internal readonly struct BalancedKLOp : IDivergenceOp
{
    /// <inheritdoc />
    public static bool HasFixedWeightSum() => false;

    /// <inheritdoc />
    public static float WeightSum() => 0f;

    /// <inheritdoc />
    public static DivergenceTerm Term(float logP, float logQ, float p, float q, float parameter)
    {
        float w = parameter, rest = 1f - parameter;
        float forward = w > 0f && p > 0f ? w * p * (logP - logQ) : 0f;
        float reverse = rest > 0f && q > 0f ? rest * q * (logQ - logP) : 0f;
        return new DivergenceTerm { Loss = forward + reverse, Weight = reverse + rest * q - w * p };
    }
}
