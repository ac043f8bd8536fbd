using System.IO.Compression;
using Engine.Data;

namespace Engine.Tests.Data;

public class IdxTests
{
    private static byte[] RandomBytes(int n, int seed)
    {
        var b = new byte[n];
        new Random(seed).NextBytes(b);
        return b;
    }

    private static byte[] Gzip(byte[] raw)
    {
        using var ms = new MemoryStream();
        using (var gz = new GZipStream(ms, CompressionLevel.Fastest, leaveOpen: true)) gz.Write(raw);
        return ms.ToArray();
    }

    /// <summary>The raw bytes of an IDX file, built by hand (not by Idx.Write).</summary>
    private static byte[] HandBuilt(byte type, int[] dims, byte[] data)
    {
        var bytes = new List<byte> { 0, 0, type, (byte)dims.Length };
        foreach (int d in dims) bytes.AddRange([(byte)(d >> 24), (byte)(d >> 16), (byte)(d >> 8), (byte)d]);
        bytes.AddRange(data);
        return bytes.ToArray();
    }

    private static string WriteRaw(TempDir dir, string name, byte[] raw, bool gzip)
    {
        var path = dir.File(name);
        File.WriteAllBytes(path, gzip ? Gzip(raw) : raw);
        return path;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void HandBuiltFile_ReadsBack(bool gzip)
    {
        using var dir = new TempDir();
        var data = RandomBytes(2 * 3 * 5, 1);
        var path = WriteRaw(dir, "x-idx3-ubyte", HandBuilt(0x08, [2, 3, 5], data), gzip);
        var a = Idx.ReadImages(path);
        Assert.Equal([2, 3, 5], a.Dims);
        Assert.Equal(data, a.Data);
        Assert.Equal(path, a.Path);

        var labels = RandomBytes(7, 2);
        var lpath = WriteRaw(dir, "y-idx1-ubyte", HandBuilt(0x08, [7], labels), gzip);
        Assert.Equal(labels, Idx.ReadLabels(lpath).Data);
        Assert.Equal([7], Idx.Read(lpath).Dims); // no expected rank: any rank accepted
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void Write_ThenRead_RoundTrips_AndMatchesTheHandBuiltBytes(bool gzip)
    {
        using var dir = new TempDir();
        foreach (int[] dims in new[] { new[] { 3, 28, 28 }, [1, 1, 1], [0, 28, 28], [5, 7, 3], [11] })
        {
            var data = RandomBytes(dims.Aggregate(1, (x, y) => x * y), dims.Sum());
            var path = dir.File($"f{dims.Length}-{dims[0]}{(gzip ? ".gz" : "")}");
            Idx.Write(path, dims, data, gzip);
            var raw = File.ReadAllBytes(path);
            Assert.Equal(gzip, raw.Length >= 2 && raw[0] == 0x1f && raw[1] == 0x8b);
            if (!gzip) Assert.Equal(HandBuilt(0x08, dims, data), raw);
            var a = Idx.Read(path, dims.Length);
            Assert.Equal(dims, a.Dims);
            Assert.Equal(data, a.Data);
        }
    }

    [Fact]
    public void Compression_IsDetectedFromContent_NotName()
    {
        using var dir = new TempDir();
        var data = RandomBytes(4 * 2 * 2, 3);
        var gzNamedPlain = dir.File("a.gz");
        Idx.Write(gzNamedPlain, [4, 2, 2], data, gzip: false);
        var plainNamedGz = dir.File("b-idx3-ubyte");
        Idx.Write(plainNamedGz, [4, 2, 2], data, gzip: true);
        Assert.Equal(data, Idx.ReadImages(gzNamedPlain).Data);
        Assert.Equal(data, Idx.ReadImages(plainNamedGz).Data);
    }

    /// <summary>A corrupt file's exception: a DataFormatException whose message starts with the path.</summary>
    private static DataFormatException Fails(string path, Func<string, IdxArray> read)
    {
        var e = Assert.Throws<DataFormatException>(() => read(path));
        Assert.Equal(path, e.Path);
        Assert.StartsWith(path + ": ", e.Message);
        return e;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WrongMagic_NamesFoundAndExpected(bool gzip)
    {
        using var dir = new TempDir();
        // A label file where images are expected.
        var labels = WriteRaw(dir, "labels", HandBuilt(0x08, [4], [1, 2, 3, 4]), gzip);
        var e = Fails(labels, Idx.ReadImages);
        Assert.Contains("bad magic number 0x00000801", e.Message);
        Assert.Contains("expected 0x00000803", e.Message);
        // An image file where labels are expected.
        var images = WriteRaw(dir, "images", HandBuilt(0x08, [1, 1, 2], [1, 2]), gzip);
        e = Fails(images, Idx.ReadLabels);
        Assert.Contains("bad magic number 0x00000803", e.Message);
        Assert.Contains("expected 0x00000801", e.Message);
        // Not an IDX file at all.
        var text = WriteRaw(dir, "text", "hello, world, this is not IDX"u8.ToArray(), gzip);
        e = Fails(text, p => Idx.Read(p));
        Assert.Contains("bad magic number 0x68656c6c", e.Message);
        // IDX of float32 elements (type 0x0D).
        var floats = WriteRaw(dir, "floats", HandBuilt(0x0D, [1, 1, 1], [0, 0, 0, 0]), gzip);
        e = Fails(floats, Idx.ReadImages);
        Assert.Contains("0x00000d03", e.Message);
        Assert.Contains("Element type 0x0d is not supported", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedData_SaysExpectedAndFoundBytes(bool gzip)
    {
        using var dir = new TempDir();
        var full = HandBuilt(0x08, [3, 4, 5], RandomBytes(60, 4)); // 16 + 60 = 76 bytes
        var path = WriteRaw(dir, "truncated", full[..71], gzip);
        var e = Fails(path, Idx.ReadImages);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("3×4×5 = 60 elements", e.Message);
        Assert.Contains("expected 76", e.Message);
        Assert.Contains("found 71", e.Message);
        if (gzip) Assert.Contains("decompressed bytes", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void TruncatedHeader_AndEmptyFile_AreReported(bool gzip)
    {
        using var dir = new TempDir();
        var full = HandBuilt(0x08, [3, 4, 5], RandomBytes(60, 5));
        var header = WriteRaw(dir, "header", full[..10], gzip);
        var e = Fails(header, Idx.ReadImages);
        Assert.Contains("truncated header: expected 16", e.Message);
        Assert.Contains("found 10", e.Message);

        var empty = WriteRaw(dir, "empty", [], gzip);
        e = Fails(empty, Idx.ReadImages);
        Assert.Contains("truncated", e.Message);
        Assert.Contains("has 0", e.Message);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void ExtraBytes_AfterTheData_AreALengthMismatch(bool gzip)
    {
        using var dir = new TempDir();
        var path = WriteRaw(dir, "long", [.. HandBuilt(0x08, [6], [0, 1, 2, 3, 4, 5]), 9, 9, 9], gzip);
        var e = Fails(path, Idx.ReadLabels);
        Assert.Contains("length mismatch", e.Message);
        Assert.Contains("expected 14", e.Message);
        Assert.Contains("found 17 (3 extra after the data)", e.Message);
    }

    [Fact]
    public void NegativeDimension_IsReported()
    {
        using var dir = new TempDir();
        var raw = HandBuilt(0x08, [2, 2, 2], new byte[8]);
        raw[8] = 0xff; // dimension 1 = 0xff000002
        var path = WriteRaw(dir, "negative", raw, gzip: false);
        var e = Fails(path, Idx.ReadImages);
        Assert.Contains("dimension 1 is -16777214", e.Message);
    }

    [Fact]
    public void CorruptGzipStream_NamesTheFile()
    {
        using var dir = new TempDir();
        var raw = HandBuilt(0x08, [50, 28, 28], RandomBytes(50 * 28 * 28, 6));
        var gz = Gzip(raw);
        // Cut the compressed stream in half: either the inflater reports it or the data runs short.
        var cut = dir.File("cut.gz");
        File.WriteAllBytes(cut, gz[..(gz.Length / 2)]);
        var e = Fails(cut, Idx.ReadImages);
        Assert.True(e.Message.Contains("truncated") || e.Message.Contains("corrupt gzip"), e.Message);
        // Garbage after a valid gzip signature and header.
        var garbage = dir.File("garbage.gz");
        File.WriteAllBytes(garbage, [.. gz[..10], .. Enumerable.Repeat((byte)0xff, 64)]);
        e = Fails(garbage, Idx.ReadImages);
        Assert.True(e.Message.Contains("truncated") || e.Message.Contains("corrupt gzip"), e.Message);
    }

    [Fact]
    public void MissingFile_IsFileNotFound()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<FileNotFoundException>(() => Idx.Read(dir.File("absent-idx3-ubyte")));
        Assert.Contains("absent-idx3-ubyte", e.Message);
    }

    [Fact]
    public void Write_RejectsDataThatDoesNotFillTheDims()
    {
        using var dir = new TempDir();
        var e = Assert.Throws<ArgumentException>(() => Idx.Write(dir.File("bad"), [2, 3], new byte[5]));
        Assert.Contains("Idx.Write", e.Message);
        Assert.Contains("2×3", e.Message);
    }
}
