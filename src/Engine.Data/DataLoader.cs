using System.Collections;
using Engine.Data.Transforms;
using Engine.Tensors;

namespace Engine.Data;

/// <summary>
/// One batch from a <see cref="DataLoader"/>: float32 images <c>[B, C, H, W]</c> and int64 labels
/// <c>[B]</c>. The caller owns both tensors: dispose the batch (<c>using (batch)</c> or
/// <see cref="Dispose"/>) when done with it, or dispose both after deconstructing
/// (<c>foreach (var (x, y) in loader)</c>). The tensors are created when the enumerator moves to the
/// batch, so a <see cref="DisposeScope"/> opened inside the loop body does not own them; one
/// opened around the whole loop does.
/// </summary>
/// <param name="Images">The images, float32 <c>[B, C, H, W]</c>.</param>
/// <param name="Labels">The class labels, int64 <c>[B]</c>.</param>
public readonly record struct Batch(Tensor Images, Tensor Labels) : IDisposable
{
    /// <summary>Disposes both tensors.</summary>
    public void Dispose()
    {
        Images.Dispose();
        Labels.Dispose();
    }
}

/// <summary>
/// Iterates an <see cref="ImageDataset"/> in batches, shuffled reproducibly.
/// <para>
/// Randomness: epoch e uses a <see cref="Generator"/> keyed by the seed with its counter offset at
/// <c>e·2^40</c> (<see cref="EpochGenerator"/>), so every epoch has its own disjoint Philox stream and
/// depends only on (seed, epoch), on every machine and thread count. From that generator the epoch
/// first draws its order (<c>Tensor.RandPerm(n, g)</c>, when shuffling), then each batch's transform
/// draws its numbers in batch order.
/// </para>
/// <para>
/// Epochs: enumerating the loader (<c>foreach</c>) runs epoch <see cref="Epoch"/> and advances
/// <see cref="Epoch"/> by one, so successive passes reshuffle; <see cref="Batches(int)"/> runs any
/// given epoch without touching the counter (e.g. to resume). Each epoch visits every sample
/// exactly once (the last partial batch dropped with <c>dropLast</c>).
/// </para>
/// <para>
/// Per batch: the samples' uint8 pixels are converted to float32 in [0, 1] straight into the batch
/// buffer (<see cref="ImageDataset.GatherImages"/>), the transform runs on that buffer, and the
/// result is copied once into the returned tensor. Batches are produced on the enumerating thread,
/// lazily; each returned <see cref="Batch"/> is owned by the caller (see its disposal note).
/// A loader is not thread-safe (the epoch counter); use one per thread. The data set is only read.
/// </para>
/// </summary>
public sealed class DataLoader : IEnumerable<Batch>
{
    /// <summary>Counter blocks reserved per epoch: the epoch's stream starts at offset <c>epoch·2^40</c>.</summary>
    public const int EpochOffsetShift = 40;

    /// <summary>
    /// A loader over <paramref name="dataset"/> (its first <paramref name="limit"/> samples when given)
    /// in batches of <paramref name="batchSize"/>, shuffled by <paramref name="seed"/> when
    /// <paramref name="shuffle"/> is set, transformed per batch by <paramref name="transform"/>.
    /// </summary>
    public DataLoader(ImageDataset dataset, int batchSize, bool shuffle = true, ulong seed = 0,
        bool dropLast = false, IBatchTransform? transform = null, int? limit = null)
    {
        ArgumentNullException.ThrowIfNull(dataset);
        if (batchSize <= 0) throw new ArgumentOutOfRangeException(nameof(batchSize), $"DataLoader: batch size {batchSize} must be positive.");
        Dataset = limit is int n ? dataset.Take(n) : dataset;
        BatchSize = batchSize;
        Shuffle = shuffle;
        Seed = seed;
        DropLast = dropLast;
        Transform = transform;
    }

    /// <summary>The samples iterated (after the optional limit).</summary>
    public ImageDataset Dataset { get; }

    /// <summary>Samples per batch (the last batch may be smaller unless <see cref="DropLast"/>).</summary>
    public int BatchSize { get; }

    /// <summary>Whether each epoch visits the samples in a random order.</summary>
    public bool Shuffle { get; }

    /// <summary>The seed of every epoch's generator.</summary>
    public ulong Seed { get; }

    /// <summary>Whether a last batch smaller than <see cref="BatchSize"/> is skipped.</summary>
    public bool DropLast { get; }

    /// <summary>The per-batch transform (null: none).</summary>
    public IBatchTransform? Transform { get; }

    /// <summary>The epoch the next enumeration runs (starts at 0; each enumeration advances it; set it to resume).</summary>
    public int Epoch
    {
        get => _epoch;
        set
        {
            ArgumentOutOfRangeException.ThrowIfNegative(value);
            _epoch = value;
        }
    }

    private int _epoch;

    /// <summary>Batches per epoch.</summary>
    public int BatchCount => DropLast ? Dataset.Count / BatchSize : (Dataset.Count + BatchSize - 1) / BatchSize;

    /// <summary>Samples per epoch (all, or all but the dropped partial batch).</summary>
    public int SamplesPerEpoch => DropLast ? BatchCount * BatchSize : Dataset.Count;

    /// <summary>The generator of epoch <paramref name="epoch"/>: key <paramref name="seed"/>, counter offset <c>epoch·2^40</c>.</summary>
    public static Generator EpochGenerator(ulong seed, int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        var g = new Generator(seed);
        g.SetState(new GeneratorState(seed, (ulong)epoch << EpochOffsetShift));
        return g;
    }

    /// <summary>The sample order of epoch <paramref name="epoch"/> (a permutation of 0..Count−1, or the identity without shuffling).</summary>
    public long[] Order(int epoch) => Order(EpochGenerator(Seed, epoch));

    private long[] Order(Generator g)
    {
        if (!Shuffle)
        {
            var identity = new long[Dataset.Count];
            for (int i = 0; i < identity.Length; i++) identity[i] = i;
            return identity;
        }
        using var perm = Tensor.RandPerm(Dataset.Count, g);
        return perm.ToArray<long>();
    }

    /// <summary>Runs epoch <paramref name="epoch"/> (does not change <see cref="Epoch"/>). Each batch is owned by the caller.</summary>
    public IEnumerable<Batch> Batches(int epoch)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(epoch);
        return Run(epoch);
    }

    private IEnumerable<Batch> Run(int epoch)
    {
        var g = EpochGenerator(Seed, epoch);
        var order = Order(g);
        int c = Dataset.Channels, h = Dataset.Height, w = Dataset.Width;
        for (int b = 0; b < BatchCount; b++)
        {
            int start = b * BatchSize, count = Math.Min(BatchSize, Dataset.Count - start);
            var indices = order.AsSpan(start, count);
            var images = new ImageBatch(GC.AllocateUninitializedArray<float>(count * Dataset.SampleSize), count, c, h, w);
            var labels = new long[count];
            Dataset.GatherImages(indices, images.Data, labels);
            if (Transform is not null) images = Transform.Apply(images, g);
            Tensor x = images.ToTensor(), y;
            try { y = Tensor.FromArray(labels, count); }
            catch { x.Dispose(); throw; }
            yield return new Batch(x, y);
        }
    }

    /// <summary>Runs epoch <see cref="Epoch"/> and advances <see cref="Epoch"/> by one.</summary>
    public IEnumerator<Batch> GetEnumerator() => Run(_epoch++).GetEnumerator();

    IEnumerator IEnumerable.GetEnumerator() => GetEnumerator();
}
