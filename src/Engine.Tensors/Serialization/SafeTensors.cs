using System.Buffers.Binary;
using System.Text;
using System.Text.Json;

namespace Engine.Tensors.Serialization;

/// <summary>
/// Reads and writes the safetensors format (huggingface/safetensors), the checkpoint format PyTorch and
/// Hugging Face users share:
/// <code>
/// [8 bytes]  N, unsigned 64-bit little-endian: the header's length in bytes
/// [N bytes]  UTF-8 JSON object, starting with '{' (may end with spaces as padding):
///            { "__metadata__": { "key": "value", ... },                      (optional, strings only)
///              "name": { "dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end] }, ... }
/// [rest]     the data section: each tensor's elements, row-major, little-endian, at
///            [begin, end) counted from the start of the data section
/// </code>
/// Rules enforced on read, each failure an <see cref="InvalidDataException"/> naming the file and the tensor:
/// the header length is at least 2, at most <see cref="MaxHeaderBytes"/> and inside the file; the header
/// is a JSON object without duplicate names; every entry has a known dtype, a shape of non-negative
/// integers and two offsets with begin ≤ end; end − begin = product(shape) × element size (checked for
/// overflow); the tensors cover the data section exactly — sorted by offset, each begins where the
/// previous ends (no overlap, no gap), the first at 0 and the last at the end of the file.
/// <para>
/// Dtypes: F32, F64, I32, I64 and BOOL load as themselves. F16 and BF16 load converted to float32, and
/// U8, I8, I16, U16 to int32 and U32 to int64 (all exact), so half-precision checkpoints made
/// elsewhere can be loaded; U64 and the 8-bit and smaller float formats are refused as not supported.
/// Writing produces the five native dtypes only.
/// </para>
/// </summary>
public static class SafeTensors
{
    /// <summary>The largest header accepted (100 MB, the reference implementation's limit).</summary>
    public const long MaxHeaderBytes = 100_000_000;

    private const string MetadataKey = "__metadata__";

    /// <summary>
    /// Writes <paramref name="tensors"/> (and optional string <paramref name="metadata"/>) to
    /// <paramref name="path"/> atomically: everything goes to a temporary file in the same directory,
    /// which is flushed to disk and then renamed over <paramref name="path"/>. If anything fails, the
    /// temporary file is deleted and an existing file at <paramref name="path"/> is left as it was.
    /// (The directory entry itself is not fsynced — .NET has no API for it — so after a power cut the
    /// rename may be lost, leaving the previous file; a half-written file never carries the name.)
    /// <para>
    /// Tensors are written in order of decreasing element size, then by name (so every tensor's data is
    /// aligned to its element size), after a header padded with spaces to a multiple of 8 bytes, as the
    /// reference writer does. Non-contiguous tensors are written in row-major order.
    /// </para>
    /// </summary>
    /// <exception cref="ArgumentException">A name is <c>__metadata__</c>, or a tensor is null.</exception>
    /// <exception cref="IOException">Writing failed (the message names the file and the tensor being written).</exception>
    public static void Save(string path, IReadOnlyDictionary<string, Tensor> tensors, IReadOnlyDictionary<string, string>? metadata = null)
    {
        ArgumentNullException.ThrowIfNull(path);
        ArgumentNullException.ThrowIfNull(tensors);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("SafeTensors.Save: big-endian hosts are not supported.");
        var entries = new List<(string Name, Tensor Tensor, long Begin, long End)>();
        foreach (var (name, t) in tensors.OrderByDescending(kv => kv.Value?.DType.ElementSize() ?? 0).ThenBy(kv => kv.Key, StringComparer.Ordinal))
        {
            if (name == MetadataKey) throw new ArgumentException($"SafeTensors.Save: '{path}': '{MetadataKey}' is reserved for metadata and cannot name a tensor.");
            if (t is null) throw new ArgumentException($"SafeTensors.Save: '{path}': tensor '{name}' is null.");
            t.RequireCpu("SafeTensors.Save");
            long begin = entries.Count == 0 ? 0 : entries[^1].End;
            entries.Add((name, t, begin, checked(begin + t.NumEl * t.DType.ElementSize())));
        }
        byte[] header = Header(entries.Select(e => (e.Name, e.Tensor.DType, e.Tensor.ShapeArray(), e.Begin, e.End)), metadata);

        string full = Path.GetFullPath(path);
        string dir = Path.GetDirectoryName(full)!;
        string temp = Path.Combine(dir, $".{Path.GetFileName(full)}.{Guid.NewGuid():N}.tmp");
        string? current = null;
        try
        {
            using (var fs = new FileStream(temp, FileMode.CreateNew, FileAccess.Write, FileShare.None, 1 << 20))
            {
                Span<byte> len = stackalloc byte[8];
                BinaryPrimitives.WriteUInt64LittleEndian(len, (ulong)header.Length);
                fs.Write(len);
                fs.Write(header);
                foreach (var (name, t, _, _) in entries)
                {
                    current = name;
                    WriteData(fs, t);
                }
                current = null;
                fs.Flush(flushToDisk: true);
            }
            File.Move(temp, full, overwrite: true);
        }
        catch (Exception ex)
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            string what = current is null ? "" : $" while writing tensor '{current}'";
            throw new IOException($"SafeTensors.Save: '{path}': failed{what}: {ex.Message} (any previous file at this path is unchanged).", ex);
        }
    }

    /// <summary>Reads every tensor of the safetensors file at <paramref name="path"/> (see <see cref="SafeTensors"/> for the checks).</summary>
    /// <exception cref="InvalidDataException">The file breaks a rule of the format (the message names the file, the tensor and the problem).</exception>
    /// <exception cref="NotSupportedException">A tensor has a dtype this engine cannot hold (U64, 8-bit floats, ...).</exception>
    public static Dictionary<string, Tensor> Load(string path) => Load(path, out _);

    /// <summary>Reads every tensor of the file at <paramref name="path"/>, and its <c>__metadata__</c> (empty if none).</summary>
    /// <exception cref="InvalidDataException">The file breaks a rule of the format (the message names the file, the tensor and the problem).</exception>
    /// <exception cref="NotSupportedException">A tensor has a dtype this engine cannot hold (U64, 8-bit floats, ...).</exception>
    public static Dictionary<string, Tensor> Load(string path, out Dictionary<string, string> metadata)
    {
        ArgumentNullException.ThrowIfNull(path);
        if (!BitConverter.IsLittleEndian) throw new PlatformNotSupportedException("SafeTensors.Load: big-endian hosts are not supported.");
        using var fs = new FileStream(path, FileMode.Open, FileAccess.Read, FileShare.Read, 1 << 16);
        var (entries, meta, dataStart) = ReadHeader(path, fs);
        metadata = meta;
        var result = new Dictionary<string, Tensor>(StringComparer.Ordinal);
        try
        {
            foreach (var e in entries)
            {
                fs.Position = dataStart + e.Begin;
                result[e.Name] = ReadTensor(path, fs, e);
            }
        }
        catch
        {
            foreach (var t in result.Values) t.Dispose();
            throw;
        }
        return result;
    }

    // ------------------------------------------------------------------ header

    private readonly record struct Entry(string Name, string FileDType, DType DType, long[] Shape, long Begin, long End);

    private static byte[] Header(IEnumerable<(string Name, DType DType, long[] Shape, long Begin, long End)> entries, IReadOnlyDictionary<string, string>? metadata)
    {
        using var ms = new MemoryStream();
        using (var w = new Utf8JsonWriter(ms))
        {
            w.WriteStartObject();
            if (metadata is { Count: > 0 })
            {
                w.WriteStartObject(MetadataKey);
                foreach (var (k, v) in metadata.OrderBy(kv => kv.Key, StringComparer.Ordinal))
                {
                    ArgumentNullException.ThrowIfNull(v, $"metadata['{k}']");
                    w.WriteString(k, v);
                }
                w.WriteEndObject();
            }
            foreach (var (name, dtype, shape, begin, end) in entries)
            {
                w.WriteStartObject(name);
                w.WriteString("dtype", FileName(dtype));
                w.WriteStartArray("shape");
                foreach (var d in shape) w.WriteNumberValue(d);
                w.WriteEndArray();
                w.WriteStartArray("data_offsets");
                w.WriteNumberValue(begin);
                w.WriteNumberValue(end);
                w.WriteEndArray();
                w.WriteEndObject();
            }
            w.WriteEndObject();
        }
        // Pad with spaces so the data section starts 8-byte aligned (8 + N is a multiple of 8).
        int padded = (int)((ms.Length + 7) / 8 * 8);
        while (ms.Length < padded) ms.WriteByte((byte)' ');
        return ms.ToArray();
    }

    private static string FileName(DType dtype) => dtype switch
    {
        DType.Float32 => "F32",
        DType.Float64 => "F64",
        DType.Int32 => "I32",
        DType.Int64 => "I64",
        DType.Bool => "BOOL",
        _ => throw new ArgumentOutOfRangeException(nameof(dtype), dtype, "unknown dtype"),
    };

    /// <summary>File dtype name -> (bytes per element, dtype it loads as); null for names this engine cannot load.</summary>
    private static (int Size, DType Loaded)? Known(string name) => name switch
    {
        "F32" => (4, DType.Float32),
        "F64" => (8, DType.Float64),
        "I32" => (4, DType.Int32),
        "I64" => (8, DType.Int64),
        "BOOL" => (1, DType.Bool),
        "F16" or "BF16" => (2, DType.Float32),
        "U8" or "I8" => (1, DType.Int32),
        "I16" or "U16" => (2, DType.Int32),
        "U32" => (4, DType.Int64),
        _ => null,
    };

    private static readonly HashSet<string> Unsupported = ["U64", "F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"];

    private static InvalidDataException Bad(string path, string message) => new($"SafeTensors.Load: '{path}': {message}");

    private static (List<Entry> Entries, Dictionary<string, string> Metadata, long DataStart) ReadHeader(string path, FileStream fs)
    {
        long fileLength = fs.Length;
        if (fileLength < 8) throw Bad(path, $"the file is {fileLength} bytes, shorter than the 8-byte header length (not a safetensors file, or truncated).");
        Span<byte> len = stackalloc byte[8];
        fs.ReadExactly(len);
        ulong n = BinaryPrimitives.ReadUInt64LittleEndian(len);
        if (n < 2) throw Bad(path, $"header length {n} is too small for a JSON object.");
        if (n > MaxHeaderBytes) throw Bad(path, $"header length {n} exceeds the limit of {MaxHeaderBytes} bytes (not a safetensors file?).");
        if ((long)n > fileLength - 8) throw Bad(path, $"header length {n} exceeds the {fileLength - 8} bytes that follow it (truncated file, or not a safetensors file).");
        var header = new byte[n];
        fs.ReadExactly(header);
        if (header[0] != (byte)'{') throw Bad(path, $"the header does not start with '{{' (first byte 0x{header[0]:X2}); not a safetensors file.");
        long dataStart = 8 + (long)n, dataLength = fileLength - dataStart;

        JsonDocument doc;
        try { doc = JsonDocument.Parse(header, new JsonDocumentOptions { AllowTrailingCommas = false, CommentHandling = JsonCommentHandling.Disallow }); }
        catch (JsonException ex) { throw Bad(path, $"the header is not valid JSON: {ex.Message}"); }
        using (doc)
        {
            if (doc.RootElement.ValueKind != JsonValueKind.Object) throw Bad(path, "the header is not a JSON object.");
            var entries = new List<Entry>();
            var metadata = new Dictionary<string, string>(StringComparer.Ordinal);
            var seen = new HashSet<string>(StringComparer.Ordinal);
            foreach (var prop in doc.RootElement.EnumerateObject())
            {
                string name = prop.Name;
                if (!seen.Add(name)) throw Bad(path, $"the name '{name}' appears twice in the header.");
                if (name == MetadataKey)
                {
                    if (prop.Value.ValueKind != JsonValueKind.Object) throw Bad(path, $"'{MetadataKey}' must be an object of strings; it is a {prop.Value.ValueKind}.");
                    foreach (var m in prop.Value.EnumerateObject())
                    {
                        if (m.Value.ValueKind != JsonValueKind.String) throw Bad(path, $"'{MetadataKey}' entry '{m.Name}' must be a string; it is a {m.Value.ValueKind}.");
                        metadata[m.Name] = m.Value.GetString()!;
                    }
                    continue;
                }
                entries.Add(ParseEntry(path, name, prop.Value, dataLength));
            }
            CheckCoverage(path, entries, dataLength);
            return (entries, metadata, dataStart);
        }
    }

    private static Entry ParseEntry(string path, string name, JsonElement e, long dataLength)
    {
        string where = $"tensor '{name}'";
        if (e.ValueKind != JsonValueKind.Object) throw Bad(path, $"{where}: expected an object with dtype, shape and data_offsets; got a {e.ValueKind}.");
        if (!e.TryGetProperty("dtype", out var dt) || dt.ValueKind != JsonValueKind.String) throw Bad(path, $"{where}: missing or non-string \"dtype\".");
        if (!e.TryGetProperty("shape", out var sh) || sh.ValueKind != JsonValueKind.Array) throw Bad(path, $"{where}: missing or non-array \"shape\".");
        if (!e.TryGetProperty("data_offsets", out var off) || off.ValueKind != JsonValueKind.Array) throw Bad(path, $"{where}: missing or non-array \"data_offsets\".");
        string dtype = dt.GetString()!;
        var known = Known(dtype);
        if (known is null)
        {
            if (Unsupported.Contains(dtype))
                throw new NotSupportedException($"SafeTensors.Load: '{path}': {where} has dtype {dtype}, which is not supported yet (supported: F32, F64, I32, I64, BOOL; F16/BF16 load as float32, U8/I8/I16/U16 as int32, U32 as int64).");
            throw Bad(path, $"{where}: unknown dtype '{dtype}'.");
        }
        var shape = new long[sh.GetArrayLength()];
        int k = 0;
        foreach (var d in sh.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw Bad(path, $"{where}: shape entry {k} ({d.GetRawText()}) is not a non-negative integer.");
            shape[k++] = v;
        }
        if (off.GetArrayLength() != 2) throw Bad(path, $"{where}: data_offsets must be [begin, end]; got {off.GetRawText()}.");
        var o = new long[2];
        k = 0;
        foreach (var d in off.EnumerateArray())
        {
            if (d.ValueKind != JsonValueKind.Number || !d.TryGetInt64(out long v) || v < 0)
                throw Bad(path, $"{where}: data_offsets entry {k} ({d.GetRawText()}) is not a non-negative integer.");
            o[k++] = v;
        }
        long begin = o[0], end = o[1];
        if (end < begin) throw Bad(path, $"{where}: data_offsets [{begin}, {end}] end before they begin.");
        long bytes;
        try
        {
            long numel = 1;
            foreach (var d in shape) numel = checked(numel * d);
            bytes = checked(numel * known.Value.Size);
        }
        catch (OverflowException) { throw Bad(path, $"{where}: shape {ShapeUtil.Format(shape)} of {dtype} overflows a 64-bit byte count."); }
        if (end - begin != bytes)
            throw Bad(path, $"{where}: shape {ShapeUtil.Format(shape)} of {dtype} needs {bytes} bytes, but data_offsets [{begin}, {end}] span {end - begin}.");
        if (end > dataLength)
            throw Bad(path, $"{where}: data_offsets [{begin}, {end}] are out of range: the data section has only {dataLength} bytes (truncated file?).");
        return new Entry(name, dtype, known.Value.Loaded, shape, begin, end);
    }

    /// <summary>The tensors, sorted by offset, must tile [0, dataLength) exactly: no overlap, no gap, nothing left over.</summary>
    private static void CheckCoverage(string path, List<Entry> entries, long dataLength)
    {
        entries.Sort((a, b) => a.Begin != b.Begin ? a.Begin.CompareTo(b.Begin) : a.End.CompareTo(b.End));
        long running = 0;
        string? previous = null;
        foreach (var e in entries)
        {
            if (e.Begin < running)
                throw Bad(path, $"tensor '{e.Name}' (data_offsets [{e.Begin}, {e.End}]) overlaps tensor '{previous}', which ends at {running}.");
            if (e.Begin > running)
                throw Bad(path, previous is null
                    ? $"tensor '{e.Name}' begins at {e.Begin}: a gap of {e.Begin} bytes at the start of the data section, covered by no tensor."
                    : $"gap of {e.Begin - running} bytes between tensor '{previous}' (ends at {running}) and tensor '{e.Name}' (begins at {e.Begin}), covered by no tensor.");
            running = e.End;
            previous = e.Name;
        }
        if (running != dataLength)
            throw Bad(path, $"the data section has {dataLength - running} bytes after the last tensor{(previous is null ? "" : $" ('{previous}', ending at {running})")} that no tensor covers.");
    }

    // ------------------------------------------------------------------ data

    private static unsafe byte* Bytes(Tensor t) => t.DType switch
    {
        DType.Float32 => (byte*)t.Ptr<float>(),
        DType.Float64 => (byte*)t.Ptr<double>(),
        DType.Int32 => (byte*)t.Ptr<int>(),
        DType.Int64 => (byte*)t.Ptr<long>(),
        _ => (byte*)t.Ptr<bool>(),
    };

    private const int Chunk = 1 << 26;

    private static unsafe void WriteData(FileStream fs, Tensor t)
    {
        Tensor c;
        using (Tensor.NoGrad()) c = t.Contiguous();
        using (c)
        {
            long total = c.NumEl * c.DType.ElementSize();
            byte* p = Bytes(c);
            for (long done = 0; done < total; done += Chunk)
                fs.Write(new ReadOnlySpan<byte>(p + done, (int)Math.Min(Chunk, total - done)));
        }
    }

    private static unsafe Tensor ReadTensor(string path, FileStream fs, Entry e)
    {
        var t = Tensor.Allocate(e.Shape, e.DType, zero: false, "SafeTensors.Load");
        try
        {
            long total = e.End - e.Begin;
            if (e.FileDType is "F32" or "F64" or "I32" or "I64" or "BOOL")
            {
                byte* p = Bytes(t);
                for (long done = 0; done < total; done += Chunk)
                    fs.ReadExactly(new Span<byte>(p + done, (int)Math.Min(Chunk, total - done)));
                if (e.DType == DType.Bool)
                    for (long i = 0; i < total; i++) p[i] = p[i] != 0 ? (byte)1 : (byte)0; // canonical C# bools
                return t;
            }
            int size = e.FileDType switch { "U8" or "I8" => 1, "F16" or "BF16" or "I16" or "U16" => 2, _ => 4 };
            var buffer = new byte[Math.Min(total, Chunk / 8 * size)];
            long element = 0;
            for (long done = 0; done < total;)
            {
                int count = (int)Math.Min(buffer.Length, total - done);
                fs.ReadExactly(buffer, 0, count);
                Convert(e.FileDType, buffer.AsSpan(0, count), t, element);
                element += count / size;
                done += count;
            }
            return t;
        }
        catch (EndOfStreamException)
        {
            t.Dispose();
            throw Bad(path, $"tensor '{e.Name}': the file ended while reading its data (truncated while being read?).");
        }
        catch
        {
            t.Dispose();
            throw;
        }
    }

    /// <summary>Widens file elements to the loaded dtype (all exact: F16/BF16 -> float32, small ints -> int32, U32 -> int64).</summary>
    private static unsafe void Convert(string fileDType, ReadOnlySpan<byte> src, Tensor dst, long start)
    {
        switch (fileDType)
        {
            case "F16":
            {
                float* y = dst.Ptr<float>() + start;
                for (int i = 0; i < src.Length / 2; i++) y[i] = (float)BinaryPrimitives.ReadHalfLittleEndian(src[(2 * i)..]);
                break;
            }
            case "BF16":
            {
                float* y = dst.Ptr<float>() + start;
                for (int i = 0; i < src.Length / 2; i++) y[i] = BitConverter.Int32BitsToSingle(BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]) << 16);
                break;
            }
            case "U8":
            {
                int* y = dst.Ptr<int>() + start;
                for (int i = 0; i < src.Length; i++) y[i] = src[i];
                break;
            }
            case "I8":
            {
                int* y = dst.Ptr<int>() + start;
                for (int i = 0; i < src.Length; i++) y[i] = (sbyte)src[i];
                break;
            }
            case "I16":
            {
                int* y = dst.Ptr<int>() + start;
                for (int i = 0; i < src.Length / 2; i++) y[i] = BinaryPrimitives.ReadInt16LittleEndian(src[(2 * i)..]);
                break;
            }
            case "U16":
            {
                int* y = dst.Ptr<int>() + start;
                for (int i = 0; i < src.Length / 2; i++) y[i] = BinaryPrimitives.ReadUInt16LittleEndian(src[(2 * i)..]);
                break;
            }
            default: // U32
            {
                long* y = dst.Ptr<long>() + start;
                for (int i = 0; i < src.Length / 4; i++) y[i] = BinaryPrimitives.ReadUInt32LittleEndian(src[(4 * i)..]);
                break;
            }
        }
    }
}
