using System.Buffers.Binary;
using System.IO.Compression;

namespace Engine.Data;

/// <summary>
/// A minimal PNG writer (no third-party imaging library): 8-bit grayscale (color type 0) or 8-bit RGB
/// (color type 2), no interlacing, every scanline stored with filter type 0 (None), the image data in
/// one IDAT chunk compressed by <see cref="ZLibStream"/> (RFC 1950: a zlib header, DEFLATE, an Adler-32
/// trailer — exactly what PNG's compression method 0 requires).
/// <para>
/// File layout: the 8-byte signature <c>89 50 4E 47 0D 0A 1A 0A</c>, then chunks IHDR, IDAT, IEND; each
/// chunk is <c>length (u32 big-endian) · type (4 ASCII bytes) · data · CRC-32 (u32 big-endian)</c>, the CRC
/// taken over type and data (ISO 3309 / ITU-T V.42 polynomial 0xEDB88320, reflected, init and final
/// XOR 0xFFFFFFFF; see <see cref="Crc32"/>). IHDR holds width, height (u32 BE), bit depth 8, color type,
/// compression 0, filter 0, interlace 0.
/// </para>
/// <para>
/// <see cref="SaveGrid"/> tiles float images (values in [0, 1], clamped) into a grid with a padding
/// border, e.g. a synthetic data set with one row per class.
/// </para>
/// </summary>
public static class Png
{
    /// <summary>The 8-byte PNG file signature.</summary>
    public static ReadOnlySpan<byte> Signature => [0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A];

    // CRC-32 lookup table for the reflected polynomial 0xEDB88320 (one entry per byte value), built
    // once: entry n is n shifted right 8 times, XORing the polynomial whenever a 1 bit falls off.
    private static readonly uint[] CrcTable = BuildCrcTable();

    private static uint[] BuildCrcTable()
    {
        var table = new uint[256];
        for (uint n = 0; n < 256; n++)
        {
            uint c = n;
            for (int k = 0; k < 8; k++) c = (c & 1) != 0 ? 0xEDB88320u ^ (c >> 1) : c >> 1;
            table[n] = c;
        }
        return table;
    }

    /// <summary>
    /// CRC-32 of <paramref name="data"/> as PNG (and zip, gzip) define it: reflected polynomial 0xEDB88320,
    /// initial value 0xFFFFFFFF, final XOR 0xFFFFFFFF. CRC-32("123456789") = 0xCBF43926.
    /// </summary>
    public static uint Crc32(ReadOnlySpan<byte> data) => UpdateCrc(0xFFFFFFFFu, data) ^ 0xFFFFFFFFu;

    private static uint UpdateCrc(uint crc, ReadOnlySpan<byte> data)
    {
        foreach (byte b in data) crc = CrcTable[(crc ^ b) & 0xFF] ^ (crc >> 8);
        return crc;
    }

    /// <summary>
    /// Encodes an 8-bit image as PNG bytes. <paramref name="pixels"/> holds <c>height·width·channels</c>
    /// bytes, row-major, channels interleaved (RGB RGB ...); <paramref name="channels"/> is 1 (grayscale) or
    /// 3 (RGB).
    /// </summary>
    /// <exception cref="ArgumentException">Non-positive size, channels other than 1 or 3, or a pixel count that does not fit.</exception>
    public static byte[] Encode(ReadOnlySpan<byte> pixels, int width, int height, int channels = 1)
    {
        if (width < 1 || height < 1)
            throw new ArgumentException($"Png.Encode: width and height must be positive, got {width}×{height}.");
        if (channels is not (1 or 3))
            throw new ArgumentException($"Png.Encode: channels must be 1 (grayscale) or 3 (RGB), got {channels}.");
        long stride = (long)width * channels;
        if (pixels.Length != stride * height)
            throw new ArgumentException($"Png.Encode: a {width}×{height} image with {channels} channel(s) needs {stride * height} bytes, got {pixels.Length}.");

        using var file = new MemoryStream();
        file.Write(Signature);

        Span<byte> ihdr = stackalloc byte[13];
        BinaryPrimitives.WriteUInt32BigEndian(ihdr, (uint)width);
        BinaryPrimitives.WriteUInt32BigEndian(ihdr[4..], (uint)height);
        ihdr[8] = 8;                               // bit depth
        ihdr[9] = channels == 1 ? (byte)0 : (byte)2; // color type: grayscale or truecolor
        ihdr[10] = 0;                              // compression: zlib/DEFLATE
        ihdr[11] = 0;                              // filter method 0 (adaptive, five types)
        ihdr[12] = 0;                              // no interlace
        WriteChunk(file, "IHDR", ihdr);

        // Scanlines: a filter-type byte (0 = None) before each row.
        using var compressed = new MemoryStream();
        using (var z = new ZLibStream(compressed, CompressionLevel.Optimal, leaveOpen: true))
        {
            var row = new byte[stride + 1];
            for (int y = 0; y < height; y++)
            {
                row[0] = 0;
                pixels.Slice((int)(y * stride), (int)stride).CopyTo(row.AsSpan(1));
                z.Write(row);
            }
        }
        WriteChunk(file, "IDAT", compressed.ToArray());
        WriteChunk(file, "IEND", []);
        return file.ToArray();
    }

    /// <summary>Writes <see cref="Encode"/>'s bytes to <paramref name="path"/> (replacing it).</summary>
    public static void Save(string path, ReadOnlySpan<byte> pixels, int width, int height, int channels = 1)
        => File.WriteAllBytes(path, Encode(pixels, width, height, channels));

    /// <summary>
    /// Tiles <paramref name="count"/> images into a grid of <paramref name="columns"/> images per row and
    /// returns the 8-bit pixels with the grid's size. <paramref name="images"/> holds
    /// <c>count·channels·height·width</c> floats, channel-first per image (NCHW, as tensors hold them), in
    /// [0, 1]; values are clamped to [0, 1] and mapped to <c>round(255·v)</c> (NaN becomes 0). Image i goes
    /// to row <c>i / columns</c>, column <c>i % columns</c>; <paramref name="padding"/> pixels of
    /// <paramref name="padValue"/> separate the tiles and frame the grid. Channels must be 1 or 3.
    /// </summary>
    public static (byte[] Pixels, int Width, int Height) Grid(ReadOnlySpan<float> images, int count, int channels, int height, int width,
        int columns, int padding = 2, byte padValue = 255)
    {
        if (count < 1 || height < 1 || width < 1 || columns < 1 || padding < 0)
            throw new ArgumentException($"Png.Grid: count ({count}), image size ({height}×{width}) and columns ({columns}) must be positive and padding ({padding}) ≥ 0.");
        if (channels is not (1 or 3))
            throw new ArgumentException($"Png.Grid: channels must be 1 or 3, got {channels}.");
        long per = (long)channels * height * width;
        if (images.Length != per * count)
            throw new ArgumentException($"Png.Grid: {count} images of [{channels}, {height}, {width}] need {per * count} floats, got {images.Length}.");
        int rows = (count + columns - 1) / columns;
        int gw = columns * (width + padding) + padding, gh = rows * (height + padding) + padding;
        var pixels = new byte[(long)gw * gh * channels];
        Array.Fill(pixels, padValue);
        for (int i = 0; i < count; i++)
        {
            int top = padding + i / columns * (height + padding), left = padding + i % columns * (width + padding);
            for (int c = 0; c < channels; c++)
                for (int y = 0; y < height; y++)
                    for (int x = 0; x < width; x++)
                    {
                        float v = images[(int)(i * per + ((long)c * height + y) * width + x)];
                        v = float.IsNaN(v) ? 0 : Math.Clamp(v, 0f, 1f);
                        pixels[((long)(top + y) * gw + left + x) * channels + c] = (byte)MathF.Round(v * 255f);
                    }
        }
        return (pixels, gw, gh);
    }

    /// <summary><see cref="Grid"/>, then <see cref="Save"/> to <paramref name="path"/>.</summary>
    public static void SaveGrid(string path, ReadOnlySpan<float> images, int count, int channels, int height, int width, int columns, int padding = 2, byte padValue = 255)
    {
        var (pixels, w, h) = Grid(images, count, channels, height, width, columns, padding, padValue);
        Save(path, pixels, w, h, channels);
    }

    private static void WriteChunk(Stream s, string type, ReadOnlySpan<byte> data)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32BigEndian(header, (uint)data.Length);
        for (int i = 0; i < 4; i++) header[4 + i] = (byte)type[i];
        s.Write(header);
        s.Write(data);
        uint crc = UpdateCrc(0xFFFFFFFFu, header[4..]);
        crc = UpdateCrc(crc, data) ^ 0xFFFFFFFFu;
        Span<byte> trailer = stackalloc byte[4];
        BinaryPrimitives.WriteUInt32BigEndian(trailer, crc);
        s.Write(trailer);
    }
}
