namespace Engine.Tensors.Cpu;

/// <summary>
/// An iteration plan for an elementwise op over operands that share one (broadcast) shape but have
/// their own strides. Dims of size 1 are dropped and adjacent dims that every operand walks as one
/// are merged, so a contiguous tensor of any rank becomes a single row and a transposed one a few.
/// The work is then cut into tiles of about <see cref="Parallelism.TileElements"/> elements: segments
/// of a long inner row, or runs of short rows.
/// </summary>
internal sealed class LoopPlan
{
    private readonly long[] _outer;      // sizes of the outer dims
    private readonly long[][] _outerStrides;
    private readonly long _chunk;        // inner elements per tile
    private readonly long _chunksPerRow;
    private readonly long _rowsPerTile;

    public LoopPlan(ReadOnlySpan<long> shape, params long[][] strides)
    {
        int ops = strides.Length;
        var dims = new List<long>();
        var st = new List<long[]>();
        for (int d = 0; d < shape.Length; d++)
        {
            if (shape[d] == 1) continue;
            var s = new long[ops];
            for (int k = 0; k < ops; k++) s[k] = strides[k][d];
            if (dims.Count > 0)
            {
                // Merge with the previous dim when every operand steps over it as one run.
                var prev = st[^1];
                bool merge = true;
                for (int k = 0; k < ops; k++) merge &= prev[k] == s[k] * shape[d];
                if (merge)
                {
                    dims[^1] *= shape[d];
                    st[^1] = s;
                    continue;
                }
            }
            dims.Add(shape[d]);
            st.Add(s);
        }
        NumEl = ShapeUtil.NumEl(shape);
        if (dims.Count == 0) { dims.Add(1); st.Add(new long[ops]); }
        Inner = dims[^1];
        InnerStrides = st[^1];
        _outer = dims.Take(dims.Count - 1).ToArray();
        _outerStrides = new long[ops][];
        for (int k = 0; k < ops; k++)
        {
            _outerStrides[k] = new long[_outer.Length];
            for (int d = 0; d < _outer.Length; d++) _outerStrides[k][d] = st[d][k];
        }
        Rows = ShapeUtil.NumEl(_outer);
        if (NumEl == 0) { Rows = 0; }
        long grain = Parallelism.TileElements(NumEl);
        if (Inner >= grain)
        {
            _chunk = grain;
            _chunksPerRow = (Inner + _chunk - 1) / _chunk;
            _rowsPerTile = 1;
            Tiles = Rows * _chunksPerRow;
        }
        else
        {
            _chunk = Inner;
            _chunksPerRow = 1;
            _rowsPerTile = Math.Max(1, grain / Math.Max(Inner, 1));
            Tiles = (Rows + _rowsPerTile - 1) / _rowsPerTile;
        }
    }

    public long NumEl { get; }
    public long Inner { get; }
    public long[] InnerStrides { get; }
    public long Rows { get; }
    public long Tiles { get; }
    public bool Parallel => NumEl >= Parallelism.ElementwiseThreshold && Tiles > 1;

    /// <summary>Element offsets of every operand at the start of <paramref name="row"/>.</summary>
    public void RowOffsets(long row, Span<long> offsets)
    {
        offsets.Clear();
        for (int d = _outer.Length - 1; d >= 0 && row > 0; d--)
        {
            long i = row % _outer[d];
            row /= _outer[d];
            for (int k = 0; k < offsets.Length; k++) offsets[k] += i * _outerStrides[k][d];
        }
    }

    /// <summary>
    /// Calls <paramref name="segment"/>(offsets, count) for each inner segment of <paramref name="tile"/>;
    /// offsets are per operand, in elements.
    /// </summary>
    public void ForEachSegment(long tile, Span<long> offsets, SegmentAction segment)
    {
        if (_chunksPerRow > 1)
        {
            long row = tile / _chunksPerRow, start = tile % _chunksPerRow * _chunk;
            RowOffsets(row, offsets);
            for (int k = 0; k < offsets.Length; k++) offsets[k] += start * InnerStrides[k];
            segment(offsets, Math.Min(_chunk, Inner - start));
            return;
        }
        long first = tile * _rowsPerTile, last = Math.Min(Rows, first + _rowsPerTile);
        for (long row = first; row < last; row++)
        {
            RowOffsets(row, offsets);
            segment(offsets, Inner);
        }
    }

    public delegate void SegmentAction(ReadOnlySpan<long> offsets, long count);
}
