using System.Buffers.Binary;
using System.IO.Compression;
using Engine.Data;

namespace Engine.Tests.Distillation.DatasetDistillation;

/// <summary>The hand-written PNG writer: byte-level structure, CRCs, and pixels after decompression.</summary>
public class PngTests
{
    /// <summary>Bit-by-bit CRC-32 (no table), an independent reference for the writer's table-driven one.</summary>
    private static uint ReferenceCrc(ReadOnlySpan<byte> data)
    {
        uint crc = 0xFFFFFFFF;
        foreach (byte b in data)
        {
            crc ^= b;
            for (int k = 0; k < 8; k++) crc = (crc & 1) != 0 ? (crc >> 1) ^ 0xEDB88320 : crc >> 1;
        }
        return ~crc;
    }

    private sealed record Chunk(string Type, byte[] Data);

    /// <summary>Splits a PNG into chunks, asserting the signature and every chunk's CRC.</summary>
    private static List<Chunk> ParseChunks(byte[] png)
    {
        Assert.Equal(new byte[] { 0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A }, png[..8]);
        var chunks = new List<Chunk>();
        int pos = 8;
        while (pos < png.Length)
        {
            int len = (int)BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos));
            string type = System.Text.Encoding.ASCII.GetString(png, pos + 4, 4);
            var typeAndData = png.AsSpan(pos + 4, 4 + len);
            uint stored = BinaryPrimitives.ReadUInt32BigEndian(png.AsSpan(pos + 8 + len));
            Assert.Equal(ReferenceCrc(typeAndData), stored);
            chunks.Add(new Chunk(type, png.AsSpan(pos + 8, len).ToArray()));
            pos += 12 + len;
        }
        Assert.Equal(png.Length, pos);
        return chunks;
    }

    private static byte[] Inflate(byte[] zlib)
    {
        using var input = new MemoryStream(zlib);
        using var z = new ZLibStream(input, CompressionMode.Decompress);
        using var output = new MemoryStream();
        z.CopyTo(output);
        return output.ToArray();
    }

    [Fact]
    public void Crc32_MatchesTheStandardCheckValueAndTheBitwiseReference()
    {
        Assert.Equal(0xCBF43926u, Png.Crc32("123456789"u8));
        Assert.Equal(0u, Png.Crc32([]));
        var rng = new Random(5);
        var data = new byte[1000];
        rng.NextBytes(data);
        Assert.Equal(ReferenceCrc(data), Png.Crc32(data));
    }

    [Theory]
    [InlineData(1, 7, 5)]
    [InlineData(3, 4, 9)]
    [InlineData(1, 1, 1)]
    public void Encode_RoundTrips_SignatureIhdrCrcsAndScanlines(int channels, int width, int height)
    {
        var rng = new Random(width * 31 + height + channels);
        var pixels = new byte[width * height * channels];
        rng.NextBytes(pixels);
        var png = Png.Encode(pixels, width, height, channels);

        var chunks = ParseChunks(png);
        Assert.Equal(["IHDR", "IDAT", "IEND"], chunks.Select(c => c.Type));
        var ihdr = chunks[0].Data;
        Assert.Equal(13, ihdr.Length);
        Assert.Equal((uint)width, BinaryPrimitives.ReadUInt32BigEndian(ihdr));
        Assert.Equal((uint)height, BinaryPrimitives.ReadUInt32BigEndian(ihdr.AsSpan(4)));
        Assert.Equal(8, ihdr[8]);                              // bit depth
        Assert.Equal(channels == 1 ? 0 : 2, ihdr[9]);          // grayscale / truecolor
        Assert.Equal(new byte[] { 0, 0, 0 }, ihdr[10..13]);    // compression, filter, interlace
        Assert.Empty(chunks[2].Data);

        var raw = Inflate(chunks[1].Data);
        int stride = width * channels;
        Assert.Equal(height * (stride + 1), raw.Length);
        for (int y = 0; y < height; y++)
        {
            Assert.Equal(0, raw[y * (stride + 1)]); // filter type None
            Assert.Equal(pixels.AsSpan(y * stride, stride).ToArray(), raw.AsSpan(y * (stride + 1) + 1, stride).ToArray());
        }
    }

    [Fact]
    public void Grid_PlacesEachImageInItsCellAndClampsValues()
    {
        // 3 images of 1×2×3, 2 per row, padding 1 → grid 2 rows × 2 columns: width 2·(3+1)+1 = 9, height 2·(2+1)+1 = 7.
        var images = new float[3 * 6];
        for (int i = 0; i < images.Length; i++) images[i] = (i % 6) / 5f;
        images[0] = -3f;        // clamps to 0
        images[6] = 7f;         // clamps to 1
        images[12] = float.NaN; // becomes 0
        var (pixels, w, h) = Png.Grid(images, 3, 1, 2, 3, columns: 2, padding: 1, padValue: 200);
        Assert.Equal((9, 7), (w, h));
        byte At(int x, int y) => pixels[y * w + x];
        for (int i = 0; i < 3; i++)
        {
            int top = 1 + i / 2 * 3, left = 1 + i % 2 * 4;
            for (int y = 0; y < 2; y++)
                for (int x = 0; x < 3; x++)
                {
                    float v = images[i * 6 + y * 3 + x];
                    byte expected = float.IsNaN(v) ? (byte)0 : (byte)MathF.Round(Math.Clamp(v, 0f, 1f) * 255f);
                    Assert.Equal(expected, At(left + x, top + y));
                }
        }
        Assert.Equal(200, At(0, 0));           // frame
        Assert.Equal(200, At(4, 1));           // between columns
        Assert.Equal(200, At(1, 3));           // between rows
        Assert.Equal(200, At(6, 5));           // the empty fourth cell
    }

    [Fact]
    public void Encode_RejectsBadArguments()
    {
        Assert.Contains("needs 6 bytes", Assert.Throws<ArgumentException>(() => Png.Encode(new byte[5], 3, 2)).Message);
        Assert.Contains("channels", Assert.Throws<ArgumentException>(() => Png.Encode(new byte[8], 2, 2, channels: 2)).Message);
        Assert.Contains("positive", Assert.Throws<ArgumentException>(() => Png.Encode([], 0, 2)).Message);
        Assert.Contains("need 12 floats", Assert.Throws<ArgumentException>(() => Png.Grid(new float[11], 2, 1, 2, 3, 1)).Message);
    }
}
