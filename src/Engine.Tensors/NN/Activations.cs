namespace Engine.Tensors.NN;

/// <summary>torch.nn.ReLU: max(x, 0) (NaN propagates); gradient g where x &gt; 0.</summary>
public sealed class ReLU : Module
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Relu();
    }
}

/// <summary>torch.nn.GELU: x·Φ(x) ("none", exact) or its tanh approximation ("tanh"); see <see cref="Tensor.Gelu"/>.</summary>
public sealed class GELU : Module
{
    /// <summary>A layer with the given approximation ("none" or "tanh").</summary>
    public GELU(string approximate = "none")
    {
        if (approximate is not ("none" or "tanh"))
            throw new ArgumentException($"GELU: approximate must be \"none\" or \"tanh\", got \"{approximate}\".");
        Approximate = approximate;
    }

    /// <summary>"none" or "tanh".</summary>
    public string Approximate { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Gelu(Approximate);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"approximate='{Approximate}'";
}

/// <summary>torch.nn.Identity: returns its input (as a new handle on the same elements).</summary>
public sealed class Identity : Module
{
    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        return input.Alias();
    }
}

/// <summary>torch.nn.Flatten: merges dims start_dim..end_dim (default 1..−1, keeping the batch dim).</summary>
public sealed class Flatten : Module
{
    /// <summary>A layer flattening dims <paramref name="startDim"/>..<paramref name="endDim"/>.</summary>
    public Flatten(int startDim = 1, int endDim = -1)
    {
        StartDim = startDim;
        EndDim = endDim;
    }

    /// <summary>First dim merged.</summary>
    public int StartDim { get; }

    /// <summary>Last dim merged (negative counts from the end).</summary>
    public int EndDim { get; }

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        int rank = Math.Max(input.Rank, 1);
        int s = StartDim < 0 ? StartDim + rank : StartDim, e = EndDim < 0 ? EndDim + rank : EndDim;
        if (s < 0 || s >= rank || e < 0 || e >= rank || s > e)
            throw new ArgumentException($"{Describe()}: cannot flatten dims {StartDim}..{EndDim} of an input of shape {ShapeUtil.Format(input.Shape)}.");
        return input.Flatten(StartDim, EndDim);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"start_dim={StartDim}, end_dim={EndDim}";
}
