using System.Buffers.Binary;
using System.Text;
using System.Text.Json;
using Engine.Tensors;
using Engine.Tensors.Serialization;

namespace Engine.Tests.Serialization;

/// <summary>
/// safetensors: round trips through our writer, files built byte by byte from the format's description
/// (so the reader is checked against the spec, not only against our writer), one test per corruption,
/// and the atomic write.
/// </summary>
public sealed class SafeTensorsTests : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), "engine-safetensors-" + Guid.NewGuid().ToString("N"));

    public SafeTensorsTests() => Directory.CreateDirectory(_dir);

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    /// <summary>A file: 8-byte little-endian header length, the header text as UTF-8, then <paramref name="data"/>.</summary>
    private string Build(string name, string header, byte[] data, long? declaredLength = null)
    {
        var h = Encoding.UTF8.GetBytes(header);
        var bytes = new byte[8 + h.Length + data.Length];
        BinaryPrimitives.WriteUInt64LittleEndian(bytes, (ulong)(declaredLength ?? h.Length));
        h.CopyTo(bytes, 8);
        data.CopyTo(bytes, 8 + h.Length);
        var path = PathOf(name);
        File.WriteAllBytes(path, bytes);
        return path;
    }

    private static byte[] F32(params float[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();
    private static byte[] I64(params long[] v) => v.SelectMany(BitConverter.GetBytes).ToArray();

    private static void DisposeAll(Dictionary<string, Tensor> d)
    {
        foreach (var t in d.Values) t.Dispose();
    }

    // ------------------------------------------------------------------ round trips

    public static IEnumerable<object[]> DTypesAndShapes()
    {
        foreach (var dtype in new[] { DType.Float32, DType.Float64, DType.Int32, DType.Int64, DType.Bool })
            foreach (var shape in new long[][] { [], [0], [3, 0, 2], [1], [7], [2, 3, 4] })
                yield return [dtype, shape];
    }

    [Theory]
    [MemberData(nameof(DTypesAndShapes))]
    public void RoundTrip_EveryDTypeAndShape(DType dtype, long[] shape)
    {
        var rng = new Random(TestUtil.StableSeed($"{dtype}{string.Join(",", shape)}"));
        var values = TestUtil.RandomValues(rng, TestUtil.ShapeNumEl(shape), -1000, 1000)
            .Select(v => dtype == DType.Bool ? (v > 0 ? 1 : 0) : dtype.IsFloatingPoint() ? v : Math.Round(v)).ToArray();
        using var t = TestUtil.FromDoubles(values, shape, dtype);
        var path = PathOf("t.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["x"] = t });
        var loaded = SafeTensors.Load(path);
        try
        {
            var x = Assert.Single(loaded).Value;
            Assert.Equal(dtype, x.DType);
            Assert.Equal(shape, x.ShapeArray());
            var expected = t.To(DType.Float64).ToArray<double>();
            Assert.Equal(expected, x.To(DType.Float64).ToArray<double>());
        }
        finally { DisposeAll(loaded); }
    }

    [Fact]
    public void RoundTrip_ManyTensors_NonContiguous_Metadata_AndTheBytesFollowTheSpec()
    {
        var rng = new Random(2);
        using var a = TestUtil.Random(rng, [3, 5]);
        using var bBase = TestUtil.Random(rng, [4, 6], DType.Float64);
        using var b = bBase.Transpose(0, 1); // non-contiguous
        using var c = Tensor.FromArray(new[] { true, false, true });
        using var d = Tensor.FromArray(new long[] { -5, 1L << 40 });
        using var e = Tensor.FromArray(new[] { 7, -8, 9 });
        var dict = new Dictionary<string, Tensor> { ["layer.a"] = a, ["b"] = b, ["flags"] = c, ["ids"] = d, ["e"] = e };
        var path = PathOf("many.safetensors");
        SafeTensors.Save(path, dict, new Dictionary<string, string> { ["format"] = "pt", ["note"] = "ünïcode ✓" });

        // The bytes, read by hand: header length, padding, offsets tiling the data section, alignment.
        var bytes = File.ReadAllBytes(path);
        long n = (long)BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        Assert.Equal(0, (8 + n) % 8);
        var headerText = Encoding.UTF8.GetString(bytes, 8, (int)n);
        Assert.StartsWith("{", headerText);
        Assert.EndsWith("}", headerText.TrimEnd(' ')); // padding is spaces only
        using var doc = JsonDocument.Parse(headerText);
        Assert.Equal("pt", doc.RootElement.GetProperty("__metadata__").GetProperty("format").GetString());
        var spans = new List<(long B, long E, int Size)>();
        foreach (var p in doc.RootElement.EnumerateObject().Where(p => p.Name != "__metadata__"))
        {
            var off = p.Value.GetProperty("data_offsets").EnumerateArray().Select(x => x.GetInt64()).ToArray();
            int size = p.Value.GetProperty("dtype").GetString() switch { "F64" or "I64" => 8, "F32" or "I32" => 4, _ => 1 };
            spans.Add((off[0], off[1], size));
            Assert.Equal(0, off[0] % size); // every tensor aligned to its element size
        }
        spans.Sort();
        Assert.Equal(0, spans[0].B);
        for (int i = 1; i < spans.Count; i++) Assert.Equal(spans[i - 1].E, spans[i].B);
        Assert.Equal(bytes.Length - 8 - n, spans[^1].E);
        // b's elements are written row-major (transposed order), little-endian.
        var bOff = doc.RootElement.GetProperty("b").GetProperty("data_offsets")[0].GetInt64();
        Assert.Equal(b.ToArray<double>()[1], BitConverter.ToDouble(bytes, (int)(8 + n + bOff + 8)));

        var loaded = SafeTensors.Load(path, out var meta);
        try
        {
            Assert.Equal("ünïcode ✓", meta["note"]);
            Assert.Equal(dict.Keys.Order(), loaded.Keys.Order());
            foreach (var (name, t) in dict)
            {
                Assert.Equal(t.ShapeArray(), loaded[name].ShapeArray());
                Assert.Equal(t.To(DType.Float64).ToArray<double>(), loaded[name].To(DType.Float64).ToArray<double>());
            }
        }
        finally { DisposeAll(loaded); }
    }

    [Fact]
    public void EmptyDictionary_WritesTheReferenceBytes()
    {
        // The reference writer's output for no tensors and no metadata: length 8, "{}" and 6 spaces.
        var path = PathOf("empty.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor>());
        Assert.Equal(new byte[] { 8, 0, 0, 0, 0, 0, 0, 0, 123, 125, 32, 32, 32, 32, 32, 32 }, File.ReadAllBytes(path));
        Assert.Empty(SafeTensors.Load(path));
    }

    // ------------------------------------------------------------------ hand-built files

    [Fact]
    public void Load_HandBuiltFile_UnpaddedHeader_AnyKeyOrder()
    {
        // Tensors listed out of offset order, metadata last, no padding: all allowed by the format.
        var header = "{\"w\":{\"dtype\":\"F32\",\"shape\":[2,2],\"data_offsets\":[16,32]},"
                   + "\"idx\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,16]},"
                   + "\"s\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[32,36]},"
                   + "\"z\":{\"dtype\":\"F32\",\"shape\":[0,3],\"data_offsets\":[36,36]},"
                   + "\"__metadata__\":{\"format\":\"pt\"}}";
        var data = I64(3, -4).Concat(F32(1.5f, -2f, 0.25f, 8f)).Concat(F32(42f)).ToArray();
        var loaded = SafeTensors.Load(Build("hand.safetensors", header, data), out var meta);
        try
        {
            Assert.Equal("pt", meta["format"]);
            Assert.Equal(new long[] { 3, -4 }, loaded["idx"].ToArray<long>());
            Assert.Equal(new[] { 1.5f, -2f, 0.25f, 8f }, loaded["w"].ToArray<float>());
            Assert.Equal(new long[] { 2, 2 }, loaded["w"].ShapeArray());
            Assert.Equal(0, loaded["s"].Rank);
            Assert.Equal(42f, loaded["s"].Item<float>());
            Assert.Equal(new long[] { 0, 3 }, loaded["z"].ShapeArray());
        }
        finally { DisposeAll(loaded); }
    }

    [Fact]
    public void Load_HalfPrecisionAndSmallIntegers_AreWidenedExactly()
    {
        Half[] halves = [(Half)1.5, (Half)(-2.0), Half.MaxValue];
        float[] bf = [3.0f, -0.15625f]; // exactly representable in bfloat16
        var f16 = halves.SelectMany(h => BitConverter.GetBytes(h)).ToArray();
        var bf16 = bf.SelectMany(f => BitConverter.GetBytes((ushort)(BitConverter.SingleToInt32Bits(f) >> 16))).ToArray();
        byte[] u8 = [0, 255];
        byte[] i8 = [0x80, 0x7f];
        var i16 = BitConverter.GetBytes((short)-300);
        var u16 = BitConverter.GetBytes((ushort)65535);
        var u32 = BitConverter.GetBytes(uint.MaxValue);
        var parts = new (string Name, string DType, int Count, byte[] Bytes)[]
        {
            ("h", "F16", 3, f16), ("b", "BF16", 2, bf16), ("u8", "U8", 2, u8), ("i8", "I8", 2, i8),
            ("i16", "I16", 1, i16), ("u16", "U16", 1, u16), ("u32", "U32", 1, u32),
        };
        var sb = new StringBuilder("{");
        long offset = 0;
        foreach (var (name, dtype, count, bytes) in parts)
        {
            if (sb.Length > 1) sb.Append(',');
            sb.Append($"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{count}],\"data_offsets\":[{offset},{offset + bytes.Length}]}}");
            offset += bytes.Length;
        }
        sb.Append('}');
        var loaded = SafeTensors.Load(Build("widen.safetensors", sb.ToString(), parts.SelectMany(p => p.Bytes).ToArray()));
        try
        {
            Assert.Equal(halves.Select(h => (float)h).ToArray(), loaded["h"].ToArray<float>());
            Assert.Equal(bf, loaded["b"].ToArray<float>());
            Assert.Equal(new[] { 0, 255 }, loaded["u8"].ToArray<int>());
            Assert.Equal(new[] { -128, 127 }, loaded["i8"].ToArray<int>());
            Assert.Equal(new[] { -300 }, loaded["i16"].ToArray<int>());
            Assert.Equal(new[] { 65535 }, loaded["u16"].ToArray<int>());
            Assert.Equal(new long[] { uint.MaxValue }, loaded["u32"].ToArray<long>());
        }
        finally { DisposeAll(loaded); }
    }

    // ------------------------------------------------------------------ corruptions: one test each

    private static string Entry(string name, string dtype, string shape, long b, long e)
        => $"\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":{shape},\"data_offsets\":[{b},{e}]}}";

    private void AssertBad(string file, string header, byte[] data, params string[] fragments) => AssertBad(Build(file, header, data), fragments);

    private static void AssertBad(string path, params string[] fragments)
    {
        var ex = Assert.Throws<InvalidDataException>(() => SafeTensors.Load(path));
        Assert.Contains(Path.GetFileName(path), ex.Message);
        foreach (var f in fragments) Assert.Contains(f, ex.Message);
    }

    [Fact]
    public void Corrupt_FileShorterThanTheLengthField()
    {
        var path = PathOf("tiny.safetensors");
        File.WriteAllBytes(path, [1, 2, 3]);
        AssertBad(path, "shorter than the 8-byte header length");
    }

    [Fact]
    public void Corrupt_HeaderLengthPastTheFile() =>
        AssertBad("len.safetensors", "{}", [], declaredLength: 1000);

    private void AssertBad(string file, string header, byte[] data, long declaredLength)
        => AssertBad(Build(file, header, data, declaredLength), "header length 1000 exceeds the 2 bytes");

    [Fact]
    public void Corrupt_HeaderLengthAboveTheLimit() =>
        AssertBad(Build("huge.safetensors", "{}", [], declaredLength: long.MaxValue), "exceeds the limit");

    [Fact]
    public void Corrupt_HeaderLengthTooSmall() =>
        AssertBad(Build("small.safetensors", "{}", [], declaredLength: 1), "too small");

    [Fact]
    public void Corrupt_BadJson() =>
        AssertBad("json.safetensors", "{\"a\":{\"dtype\":\"F32\",", [], "not valid JSON");

    [Fact]
    public void Corrupt_HeaderNotAnObject() =>
        AssertBad("array.safetensors", "[1, 2]  ", [], "does not start with '{'");

    [Fact]
    public void Corrupt_UnknownDType() =>
        AssertBad("dtype.safetensors", "{" + Entry("w", "F13", "[1]", 0, 4) + "}", new byte[4], "tensor 'w'", "unknown dtype 'F13'");

    [Fact]
    public void UnsupportedDType_SaysSo()
    {
        var path = Build("f8.safetensors", "{" + Entry("q", "F8_E4M3", "[2]", 0, 2) + "}", new byte[2]);
        var ex = Assert.Throws<NotSupportedException>(() => SafeTensors.Load(path));
        Assert.Contains("f8.safetensors", ex.Message);
        Assert.Contains("tensor 'q'", ex.Message);
        Assert.Contains("not supported yet", ex.Message);
    }

    [Fact]
    public void Corrupt_ShapeDoesNotMatchOffsets() =>
        AssertBad("shape.safetensors", "{" + Entry("w", "F32", "[3]", 0, 8) + "}", new byte[8], "tensor 'w'", "needs 12 bytes", "span 8");

    [Fact]
    public void Corrupt_ShapeOverflows() =>
        AssertBad("overflow.safetensors", "{" + Entry("w", "F64", "[4294967296,4294967296]", 0, 8) + "}", new byte[8], "tensor 'w'", "overflows");

    [Fact]
    public void Corrupt_NegativeShape() =>
        AssertBad("neg.safetensors", "{" + Entry("w", "F32", "[-1]", 0, 0) + "}", [], "tensor 'w'", "non-negative integer");

    [Fact]
    public void Corrupt_Overlap() =>
        AssertBad("overlap.safetensors", "{" + Entry("a", "F32", "[2]", 0, 8) + "," + Entry("b", "F32", "[2]", 4, 12) + "}", new byte[12],
            "tensor 'b'", "overlaps tensor 'a'");

    [Fact]
    public void Corrupt_Gap() =>
        AssertBad("gap.safetensors", "{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("b", "F32", "[1]", 8, 12) + "}", new byte[12],
            "gap of 4 bytes", "'a'", "'b'");

    [Fact]
    public void Corrupt_GapAtTheStart() =>
        AssertBad("gap0.safetensors", "{" + Entry("a", "F32", "[1]", 4, 8) + "}", new byte[8], "tensor 'a' begins at 4", "gap");

    [Fact]
    public void Corrupt_TrailingBytesNotCovered() =>
        AssertBad("trailing.safetensors", "{" + Entry("a", "F32", "[1]", 0, 4) + "}", new byte[6], "2 bytes after the last tensor", "'a'");

    [Fact]
    public void Corrupt_OffsetsOutOfRange() =>
        AssertBad("range.safetensors", "{" + Entry("a", "F32", "[4]", 0, 16) + "}", new byte[8], "tensor 'a'", "out of range", "only 8 bytes");

    [Fact]
    public void Corrupt_OffsetsBackwards() =>
        AssertBad("backwards.safetensors", "{" + Entry("a", "F32", "[0]", 8, 4) + "}", new byte[8], "tensor 'a'", "end before they begin");

    [Fact]
    public void Corrupt_TruncatedFile()
    {
        using var t = Tensor.Ones([64]);
        var path = PathOf("cut.safetensors");
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["weight"] = t });
        var bytes = File.ReadAllBytes(path);
        File.WriteAllBytes(path, bytes[..^10]);
        AssertBad(path, "tensor 'weight'", "out of range", "truncated");
    }

    [Fact]
    public void Corrupt_DuplicateName() =>
        AssertBad("dup.safetensors", "{" + Entry("a", "F32", "[1]", 0, 4) + "," + Entry("a", "F32", "[1]", 4, 8) + "}", new byte[8], "'a' appears twice");

    [Fact]
    public void Corrupt_MissingField() =>
        AssertBad("field.safetensors", "{\"a\":{\"dtype\":\"F32\",\"shape\":[1]}}", new byte[4], "tensor 'a'", "data_offsets");

    [Fact]
    public void Corrupt_MetadataNotStrings() =>
        AssertBad("meta.safetensors", "{\"__metadata__\":{\"epoch\":3}}", [], "__metadata__", "'epoch'", "string");

    // ------------------------------------------------------------------ atomic write

    [Fact]
    public void Save_FailingMidway_LeavesTheOldFileAndNoTempFile()
    {
        var path = PathOf("model.safetensors");
        using var old = Tensor.FromArray([1f, 2f, 3f]);
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["w"] = old });
        var before = File.ReadAllBytes(path);

        using var a = Tensor.Ones([1000]);
        var broken = Tensor.Ones([1000]);
        broken.Dispose(); // its data cannot be read: the write fails after "a" and the header were written
        var ex = Assert.Throws<IOException>(() => SafeTensors.Save(path, new Dictionary<string, Tensor> { ["a"] = a, ["b"] = broken }));
        Assert.Contains("model.safetensors", ex.Message);
        Assert.Contains("tensor 'b'", ex.Message);

        Assert.Equal(before, File.ReadAllBytes(path));
        Assert.Equal(new[] { "model.safetensors" }, Directory.GetFiles(_dir).Select(f => Path.GetFileName(f)).ToArray());
        var loaded = SafeTensors.Load(path);
        try { Assert.Equal(new[] { 1f, 2f, 3f }, loaded["w"].ToArray<float>()); }
        finally { DisposeAll(loaded); }
    }

    [Fact]
    public void Save_OverwritesAnExistingFile_AndRejectsTheReservedName()
    {
        var path = PathOf("over.safetensors");
        using var a = Tensor.FromArray([1.0]);
        using var b = Tensor.FromArray([2.0, 3.0]);
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["a"] = a });
        SafeTensors.Save(path, new Dictionary<string, Tensor> { ["b"] = b });
        var loaded = SafeTensors.Load(path);
        try { Assert.Equal(["b"], loaded.Keys.ToArray()); }
        finally { DisposeAll(loaded); }
        Assert.Contains("reserved", Assert.Throws<ArgumentException>(() => SafeTensors.Save(path, new Dictionary<string, Tensor> { ["__metadata__"] = a })).Message);
        Assert.Single(Directory.GetFiles(_dir));
    }
}
