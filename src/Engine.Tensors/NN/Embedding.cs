namespace Engine.Tensors.NN;

/// <summary>
/// torch.nn.Embedding: a lookup table of <c>num_embeddings</c> vectors of size <c>embedding_dim</c>.
/// Forward maps integer ids of any shape [...] (int64 or int32, each in [0, num_embeddings)) to
/// weight[ids] of shape [..., embedding_dim]. The weight [num_embeddings, embedding_dim] is initialized
/// N(0, 1) as in PyTorch.
/// <para>
/// Gradient: the rows of the output gradient are added into the weight's gradient at their ids (repeated
/// ids add up; <see cref="Tensor.IndexSelect"/>'s backward, an index_add), a dense gradient of the weight's
/// shape. With <c>padding_idx</c>, that row starts at zero and receives no gradient (its output is
/// weight[padding_idx] as it is, detached), as in PyTorch.
/// </para>
/// </summary>
public sealed class Embedding : Module
{
    /// <summary>A table of <paramref name="numEmbeddings"/> vectors of <paramref name="embeddingDim"/>, drawn from <paramref name="generator"/>.</summary>
    /// <param name="numEmbeddings">Size of the vocabulary (ids run from 0 to this − 1).</param>
    /// <param name="embeddingDim">Size of each vector.</param>
    /// <param name="paddingIdx">An id whose row is zero-initialized and never trained (negative counts from the end); null for none.</param>
    /// <param name="generator">Random source for the N(0, 1) initialization (the default generator when null).</param>
    public Embedding(long numEmbeddings, long embeddingDim, long? paddingIdx = null, Generator? generator = null)
    {
        if (numEmbeddings < 1 || embeddingDim < 0)
            throw new ArgumentException($"Embedding: num_embeddings must be ≥ 1 and embedding_dim ≥ 0, got num_embeddings={numEmbeddings}, embedding_dim={embeddingDim}.");
        if (paddingIdx is long p)
        {
            if (p < -numEmbeddings || p >= numEmbeddings)
                throw new ArgumentOutOfRangeException(nameof(paddingIdx), $"Embedding: padding_idx {p} is outside [-{numEmbeddings}, {numEmbeddings}).");
            PaddingIdx = p < 0 ? p + numEmbeddings : p;
        }
        NumEmbeddings = numEmbeddings;
        EmbeddingDim = embeddingDim;
        var w = RegisterParameter("weight", Tensor.Empty([numEmbeddings, embeddingDim]))!;
        Init.Normal(w, 0, 1, generator);
        if (PaddingIdx is long pad)
            using (Tensor.NoGrad())
            using (var row = w.Select(0, pad))
                row.Fill_(0);
    }

    /// <summary>Number of vectors in the table.</summary>
    public long NumEmbeddings { get; }

    /// <summary>Size of each vector.</summary>
    public long EmbeddingDim { get; }

    /// <summary>The id whose row receives no gradient, or null.</summary>
    public long? PaddingIdx { get; }

    /// <summary>The table [num_embeddings, embedding_dim].</summary>
    public Tensor Weight => GetParameter("weight")!;

    /// <inheritdoc/>
    public override Tensor Forward(Tensor input)
    {
        ArgumentNullException.ThrowIfNull(input);
        if (input.DType is not (DType.Int64 or DType.Int32))
            throw new ArgumentException($"{Describe()}: ids must be int64 or int32, got {input.DType.Name()} {ShapeUtil.Format(input.Shape)}.");
        using var flat = input.Reshape(input.NumEl);
        Tensor rows;
        try { rows = Weight.IndexSelect(0, flat); }
        catch (ArgumentOutOfRangeException e)
        {
            throw new ArgumentOutOfRangeException(nameof(input), $"{Describe()}: ids must lie in [0, {NumEmbeddings}); {e.Message}");
        }
        if (PaddingIdx is long pad && rows.RequiresGrad)
        {
            // Padding positions: the same values, cut from the graph.
            using var all = rows;
            using var detached = all.Detach();
            using var isPad = flat.Eq(pad);
            using var column = isPad.Unsqueeze(-1);
            rows = Tensor.Where(column, detached, all);
        }
        using (rows) return rows.View([.. input.Shape, EmbeddingDim]);
    }

    /// <inheritdoc/>
    protected override string ExtraRepr() => $"{NumEmbeddings}, {EmbeddingDim}{(PaddingIdx is long p ? $", padding_idx={p}" : "")}";
}
