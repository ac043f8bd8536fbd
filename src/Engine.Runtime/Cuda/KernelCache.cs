using System.Buffers.Binary;
using System.Security.Cryptography;
using System.Text;

namespace Engine.Runtime;

/// <summary>
/// A disk cache of compiled kernels (cubin, PTX, compiler log), one file per key, where the key
/// is a SHA-256 of (source, options, architecture, compiler version). Files are written
/// atomically (temp file in the same folder, then rename), so a reader never sees half a file;
/// every read is validated (magic, key, section lengths, SHA-256 of the payload) and a corrupt or
/// truncated entry is deleted and reported as a miss, never trusted.
/// </summary>
/// <remarks>
/// File layout: "ENGKC001" (8 bytes) | key hash (32) | section count (int32 LE) |
/// section lengths (int64 LE each) | SHA-256 of the sections (32) | the sections.
/// </remarks>
public sealed class KernelCache
{
    private static readonly byte[] Magic = "ENGKC001"u8.ToArray();
    private long _hits, _misses, _rejected;

    /// <summary>A cache in <paramref name="directory"/>, or in <see cref="DefaultDirectory"/> when null.</summary>
    public KernelCache(string? directory = null)
    {
        Directory = directory ?? DefaultDirectory;
    }

    /// <summary>
    /// <c>$ENGINE_KERNEL_CACHE</c> when set, else <c>$XDG_CACHE_HOME/engine/kernels</c>, else
    /// <c>~/.cache/engine/kernels</c>.
    /// </summary>
    public static string DefaultDirectory
        => ResolveDirectory(Environment.GetEnvironmentVariable("ENGINE_KERNEL_CACHE"), Environment.GetEnvironmentVariable("XDG_CACHE_HOME"),
            Environment.GetFolderPath(Environment.SpecialFolder.UserProfile));

    /// <summary>The rule of <see cref="DefaultDirectory"/> given the two variables and the home folder.</summary>
    internal static string ResolveDirectory(string? overridden, string? xdgCacheHome, string home)
    {
        if (!string.IsNullOrEmpty(overridden)) return overridden;
        var root = !string.IsNullOrEmpty(xdgCacheHome) ? xdgCacheHome : Path.Combine(home, ".cache");
        return Path.Combine(root, "engine", "kernels");
    }

    /// <summary>The process-wide cache in <see cref="DefaultDirectory"/>.</summary>
    public static KernelCache Shared { get; } = new();

    /// <summary>The folder holding the entries.</summary>
    public string Directory { get; }

    /// <summary>Reads that found a valid entry.</summary>
    public long Hits => Interlocked.Read(ref _hits);

    /// <summary>Reads that found nothing usable (absent or corrupt).</summary>
    public long Misses => Interlocked.Read(ref _misses);

    /// <summary>Entries found corrupt and deleted.</summary>
    public long Rejected => Interlocked.Read(ref _rejected);

    /// <summary>The cache key (hex SHA-256) of a compilation.</summary>
    public static string Key(string source, IEnumerable<string> options, string architecture, string compilerVersion)
    {
        var text = new StringBuilder()
            .Append("compiler=").Append(compilerVersion).Append('\n')
            .Append("arch=").Append(architecture).Append('\n');
        foreach (var option in options) text.Append("option=").Append(option).Append('\n');
        text.Append("source=\n").Append(source);
        return Convert.ToHexString(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString()))).ToLowerInvariant();
    }

    /// <summary>The file of <paramref name="key"/>.</summary>
    public string PathOf(string key) => Path.Combine(Directory, key + ".kbin");

    /// <summary>The sections stored under <paramref name="key"/>, or null (absent, unreadable or corrupt: a corrupt file is deleted).</summary>
    public byte[][]? TryRead(string key)
    {
        string path = PathOf(key);
        byte[] data;
        try { data = File.ReadAllBytes(path); }
        catch (IOException) { Interlocked.Increment(ref _misses); return null; }
        catch (UnauthorizedAccessException) { Interlocked.Increment(ref _misses); return null; }
        var sections = Decode(data, key);
        if (sections is null)
        {
            Interlocked.Increment(ref _rejected);
            Interlocked.Increment(ref _misses);
            try { File.Delete(path); } catch (IOException) { } catch (UnauthorizedAccessException) { }
            return null;
        }
        Interlocked.Increment(ref _hits);
        return sections;
    }

    /// <summary>Stores <paramref name="sections"/> under <paramref name="key"/>, atomically. I/O failures are swallowed: the cache is an optimization.</summary>
    public void Write(string key, IReadOnlyList<byte[]> sections)
    {
        byte[] data = Encode(key, sections);
        string temp = Path.Combine(Directory, $".{key}.{Environment.ProcessId}.{Guid.NewGuid():N}.tmp");
        try
        {
            System.IO.Directory.CreateDirectory(Directory);
            using (var stream = new FileStream(temp, FileMode.CreateNew, FileAccess.Write))
            {
                stream.Write(data);
                stream.Flush(flushToDisk: true);
            }
            File.Move(temp, PathOf(key), overwrite: true);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            try { File.Delete(temp); } catch (IOException) { } catch (UnauthorizedAccessException) { }
        }
    }

    private static byte[] Encode(string key, IReadOnlyList<byte[]> sections)
    {
        int header = Magic.Length + 32 + 4 + 8 * sections.Count + 32;
        var data = new byte[header + sections.Sum(s => (long)s.Length)];
        var span = data.AsSpan();
        Magic.CopyTo(span);
        Convert.FromHexString(key).CopyTo(span[8..]);
        BinaryPrimitives.WriteInt32LittleEndian(span[40..], sections.Count);
        int at = header;
        for (int i = 0; i < sections.Count; i++)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[(44 + 8 * i)..], sections[i].Length);
            sections[i].CopyTo(span[at..]);
            at += sections[i].Length;
        }
        SHA256.HashData(span[header..]).CopyTo(span[(header - 32)..]);
        return data;
    }

    private static byte[][]? Decode(byte[] data, string key)
    {
        var span = data.AsSpan();
        if (data.Length < 44 || !span[..8].SequenceEqual(Magic)) return null;
        if (!span[8..40].SequenceEqual(Convert.FromHexString(key))) return null;
        int count = BinaryPrimitives.ReadInt32LittleEndian(span[40..]);
        if (count < 0 || count > 64) return null;
        long header = 44L + 8L * count + 32;
        if (data.Length < header) return null;
        var lengths = new long[count];
        long total = 0;
        for (int i = 0; i < count; i++)
        {
            lengths[i] = BinaryPrimitives.ReadInt64LittleEndian(span[(44 + 8 * i)..]);
            if (lengths[i] < 0) return null;
            total += lengths[i];
        }
        if (header + total != data.Length) return null;
        var payload = span[(int)header..];
        if (!SHA256.HashData(payload).AsSpan().SequenceEqual(span[(int)(header - 32)..(int)header])) return null;
        var sections = new byte[count][];
        int at = 0;
        for (int i = 0; i < count; i++)
        {
            sections[i] = payload.Slice(at, (int)lengths[i]).ToArray();
            at += (int)lengths[i];
        }
        return sections;
    }
}
