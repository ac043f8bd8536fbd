namespace Engine.Distillation;

/// <summary>How per-row losses are combined. Rows whose label equals the ignore index contribute nothing and count nowhere.</summary>
public enum Reduction
{
    /// <summary>No reduction: one loss per row, shaped like the logits without their last (class) dim.</summary>
    None,

    /// <summary>The sum of the per-row losses.</summary>
    Sum,

    /// <summary>The sum divided by (counted rows × classes): PyTorch's <c>kl_div(reduction="mean")</c>, an element mean.</summary>
    Mean,

    /// <summary>
    /// The sum divided by the batch size: the counted rows for 2-D logits [N, V]; for [B, L, V] the size
    /// of dim 0, B (PyTorch's <c>"batchmean"</c>). The KD convention (Hinton, mdistiller, torchdistill).
    /// </summary>
    BatchMean,

    /// <summary>The sum divided by the number of counted rows (tokens), whatever the rank: the language-model convention (TAID, DistiLLM, Liger).</summary>
    TokenMean,
}

/// <summary>What the teacher tensor holds (the last dim is the class dim).</summary>
public enum TeacherInput
{
    /// <summary>Unnormalized scores t; the target distribution is softmax(t / T).</summary>
    Logits,

    /// <summary>Log-probabilities log p (already normalized and already tempered: the temperature is not applied to them).</summary>
    LogProbabilities,

    /// <summary>Probabilities p (already normalized and tempered); zeros allowed (0·log 0 = 0).</summary>
    Probabilities,
}

/// <summary>Which implementation of a loss runs.</summary>
public enum LossImplementation
{
    /// <summary>The fused form, except where a form of the inputs or options has no fused path (then the composite form). The default.</summary>
    Auto,

    /// <summary>The fused one-pass form (loss and gradient together); an error where it does not apply.</summary>
    Fused,

    /// <summary>The composite form built from differentiable tensor ops (any-order gradients; the reference for the fused form).</summary>
    Composite,
}
