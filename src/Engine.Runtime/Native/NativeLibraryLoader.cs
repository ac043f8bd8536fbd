using System.Runtime.InteropServices;

namespace Engine.Runtime.Native;

/// <summary>
/// Loads a native library from a list of candidate names (first found wins) and resolves its
/// exports to function pointers. Each backend's API class (ClApi, NvrtcApi, CuApi) uses it, so a
/// missing library is a reason string, never a <see cref="DllNotFoundException"/> at first call.
/// </summary>
internal sealed class NativeLibraryLoader
{
    private NativeLibraryLoader(nint handle, string name)
    {
        Handle = handle;
        Name = name;
    }

    /// <summary>The OS handle of the loaded library (kept for the process lifetime).</summary>
    public nint Handle { get; }

    /// <summary>The candidate name that loaded.</summary>
    public string Name { get; }

    /// <summary>Loads the first of <paramref name="names"/> that the OS finds; null and a reason otherwise.</summary>
    public static NativeLibraryLoader? TryLoad(IReadOnlyList<string> names, out string? reason)
    {
        foreach (var name in names)
            if (NativeLibrary.TryLoad(name, out var handle))
            {
                reason = null;
                return new NativeLibraryLoader(handle, name);
            }
        reason = names.Count == 1 ? $"{names[0]} not found" : $"none of {string.Join(", ", names)} found";
        return null;
    }

    /// <summary>The address of export <paramref name="symbol"/>; throws naming the library when it is absent.</summary>
    public nint Get(string symbol)
        => NativeLibrary.TryGetExport(Handle, symbol, out var address)
            ? address
            : throw new EntryPointNotFoundException($"{Name} has no export '{symbol}' (library too old?).");

    /// <summary>The address of export <paramref name="symbol"/>, or zero when absent (optional entry points).</summary>
    public nint GetOptional(string symbol) => NativeLibrary.TryGetExport(Handle, symbol, out var address) ? address : 0;
}

/// <summary>
/// A native library loaded and bound on first use, once per process. Each backend's API class holds
/// one; a missing library or export becomes <see cref="MissingReason"/> instead of an exception.
/// </summary>
internal sealed class LazyNativeLibrary(string[] names, Action<NativeLibraryLoader> bind)
{
    private readonly Lazy<(string? Name, string? Missing)> _state = new(() =>
    {
        var lib = NativeLibraryLoader.TryLoad(names, out var missing);
        if (lib is null) return (null, missing);
        try
        {
            bind(lib);
            return (lib.Name, null);
        }
        catch (EntryPointNotFoundException e)
        {
            return (null, e.Message);
        }
    }, LazyThreadSafetyMode.ExecutionAndPublication);

    /// <summary>Null when the library loaded and bound, otherwise why not.</summary>
    public string? MissingReason => _state.Value.Missing;

    /// <summary>The candidate name that loaded (null when none did).</summary>
    public string? LoadedName => _state.Value.Name;
}
