using System.Buffers.Binary;
using System.IO.Compression;

namespace Engine.Data;

/// <summary>
/// An n-dimensional array of unsigned bytes read from an IDX file (the MNIST format): its
/// dimensions and its elements in row-major order.
/// </summary>
/// <param name="Path">The file it was read from.</param>
/// <param name="Dims">The dimensions from the header (dimension 0 is the sample count).</param>
/// <param name="Data">The elements, row-major, <c>product(Dims)</c> bytes.</param>
public sealed record IdxArray(string Path, int[] Dims, byte[] Data);

/// <summary>
/// Reads and writes IDX files (the format of MNIST and Fashion-MNIST), plain or gzip-compressed.
/// <para>
/// Layout: a 4-byte magic number <c>00 00 TT NN</c> (TT the element type, 0x08 = unsigned byte;
/// NN the number of dimensions), then NN big-endian int32 dimensions, then the elements row-major.
/// Images are <c>0x00000803</c> (count, rows, columns), labels <c>0x00000801</c> (count).
/// </para>
/// <para>
/// Reading streams the file (no whole-file buffer, so a .gz is decompressed straight into the
/// result) and validates everything: the magic number, the rank, the length (a truncated file and a
/// file with bytes after the data are both errors). Compression is detected from the content
/// (gzip's 1f 8b signature), not the file name. Every problem is a <see cref="DataFormatException"/>
/// naming the file and what was expected versus found.
/// </para>
/// </summary>
public static class Idx
{
    /// <summary>The IDX element type code of unsigned bytes, the only one this reader accepts.</summary>
    public const byte UnsignedByte = 0x08;

    /// <summary>The magic number of an IDX image file: unsigned bytes, 3 dimensions.</summary>
    public const int ImagesMagic = 0x00000803;

    /// <summary>The magic number of an IDX label file: unsigned bytes, 1 dimension.</summary>
    public const int LabelsMagic = 0x00000801;

    private const int StreamBuffer = 1 << 16;

    /// <summary>
    /// Reads an IDX file of unsigned bytes. When <paramref name="expectedRank"/> is given, the magic
    /// number must be exactly <c>0x000008NN</c> with NN = that rank.
    /// </summary>
    /// <exception cref="DataFormatException">The file is malformed (the message names it and the problem).</exception>
    /// <exception cref="FileNotFoundException">The file does not exist.</exception>
    public static IdxArray Read(string path, int? expectedRank = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        using var file = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, StreamBuffer, FileOptions.SequentialScan);
        bool gzip = file.Length >= 2 && file.ReadByte() == 0x1f && file.ReadByte() == 0x8b;
        file.Position = 0;
        using Stream stream = gzip ? new GZipStream(file, CompressionMode.Decompress) : file;
        string what = gzip ? "decompressed bytes" : "bytes";
        try
        {
            return ReadFrom(stream, path, expectedRank, what);
        }
        catch (InvalidDataException e)
        {
            throw new DataFormatException(path, $"corrupt gzip data ({e.Message}).", e);
        }
    }

    /// <summary>Reads an image file (magic 0x00000803): returns (count, rows, columns, pixels).</summary>
    /// <exception cref="DataFormatException">The file is malformed.</exception>
    public static IdxArray ReadImages(string path) => Read(path, expectedRank: 3);

    /// <summary>Reads a label file (magic 0x00000801).</summary>
    /// <exception cref="DataFormatException">The file is malformed.</exception>
    public static IdxArray ReadLabels(string path) => Read(path, expectedRank: 1);

    private static IdxArray ReadFrom(Stream stream, string path, int? expectedRank, string what)
    {
        Span<byte> magicBytes = stackalloc byte[4];
        int got = ReadFully(stream, magicBytes);
        if (got < 4)
            throw new DataFormatException(path, $"truncated: the file has {got} {what}, fewer than the 4-byte IDX magic number.");
        int magic = BinaryPrimitives.ReadInt32BigEndian(magicBytes);
        int rank = magicBytes[3];
        string expectedMagic = expectedRank is int r
            ? $"0x{(UnsignedByte << 8) | r:x8} (IDX, unsigned bytes, {r} dimension{(r == 1 ? "" : "s")})"
            : "0x000008NN (IDX, unsigned bytes, NN dimensions)";
        if (magicBytes[0] != 0 || magicBytes[1] != 0 || magicBytes[2] != UnsignedByte || (expectedRank is int er && rank != er) || rank == 0)
            throw new DataFormatException(path, $"bad magic number 0x{magic:x8}; expected {expectedMagic}." +
                (magicBytes[0] == 0 && magicBytes[1] == 0 && magicBytes[2] != UnsignedByte && rank > 0
                    ? $" Element type 0x{magicBytes[2]:x2} is not supported; only 0x08 (unsigned byte) is." : ""));

        var header = new byte[4 * rank];
        got = ReadFully(stream, header);
        if (got < header.Length)
            throw new DataFormatException(path, $"truncated header: expected {4 + header.Length} {what} of header for {rank} dimensions, found {4 + got}.");
        var dims = new int[rank];
        long count = 1;
        for (int d = 0; d < rank; d++)
        {
            dims[d] = BinaryPrimitives.ReadInt32BigEndian(header.AsSpan(4 * d));
            if (dims[d] < 0)
                throw new DataFormatException(path, $"dimension {d} is {dims[d]}; expected a non-negative size.");
            count *= dims[d];
            if (count > Array.MaxLength)
                throw new DataFormatException(path, $"dimensions {FormatDims(dims.AsSpan(0, d + 1))} hold more than {Array.MaxLength} elements, more than this reader supports.");
        }

        long headerBytes = 4 + header.Length;
        var data = GC.AllocateUninitializedArray<byte>((int)count);
        got = ReadFully(stream, data);
        if (got < count)
            throw new DataFormatException(path, $"truncated: the header declares {FormatDims(dims)} = {count} elements, " +
                $"so expected {headerBytes + count} {what}, found {headerBytes + got}.");
        long extra = CountRemaining(stream);
        if (extra > 0)
            throw new DataFormatException(path, $"length mismatch: the header declares {FormatDims(dims)} = {count} elements, " +
                $"so expected {headerBytes + count} {what}, found {headerBytes + count + extra} ({extra} extra after the data).");
        return new IdxArray(path, dims, data);
    }

    /// <summary>
    /// Writes <paramref name="data"/> (row-major, <c>product(dims)</c> unsigned bytes) as an IDX
    /// file, gzip-compressed when <paramref name="gzip"/> is set. Replaces an existing file.
    /// </summary>
    public static void Write(string path, ReadOnlySpan<int> dims, ReadOnlySpan<byte> data, bool gzip = false)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (dims.Length is < 1 or > 255)
            throw new ArgumentException($"Idx.Write: {dims.Length} dimensions; expected 1 to 255.", nameof(dims));
        long count = 1;
        foreach (int d in dims)
        {
            if (d < 0) throw new ArgumentException($"Idx.Write: dimensions {FormatDims(dims)} include a negative size.", nameof(dims));
            count *= d;
        }
        if (count != data.Length)
            throw new ArgumentException($"Idx.Write: dimensions {FormatDims(dims)} hold {count} elements but {data.Length} bytes were given.", nameof(data));

        using var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, StreamBuffer);
        using Stream stream = gzip ? new GZipStream(file, CompressionLevel.Fastest) : file;
        Span<byte> word = stackalloc byte[4];
        BinaryPrimitives.WriteInt32BigEndian(word, (UnsignedByte << 8) | dims.Length);
        stream.Write(word);
        foreach (int d in dims)
        {
            BinaryPrimitives.WriteInt32BigEndian(word, d);
            stream.Write(word);
        }
        stream.Write(data);
    }

    /// <summary>Reads until <paramref name="buffer"/> is full or the stream ends; returns the bytes read.</summary>
    private static int ReadFully(Stream stream, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int n = stream.Read(buffer[total..]);
            if (n == 0) break;
            total += n;
        }
        return total;
    }

    private static long CountRemaining(Stream stream)
    {
        Span<byte> scratch = stackalloc byte[4096];
        long total = 0;
        int n;
        while ((n = stream.Read(scratch)) > 0) total += n;
        return total;
    }

    private static string FormatDims(ReadOnlySpan<int> dims)
    {
        var parts = new string[dims.Length];
        for (int i = 0; i < dims.Length; i++) parts[i] = dims[i].ToString(System.Globalization.CultureInfo.InvariantCulture);
        return string.Join('×', parts);
    }
}
