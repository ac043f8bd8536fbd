namespace Engine.Runtime;

/// <summary>
/// An NVRTC call failed: <see cref="ErrorName"/> is NVRTC's name for the result
/// (NVRTC_ERROR_COMPILATION, ...), <see cref="Call"/> the function, and <see cref="Log"/> the
/// full program log (compiler errors with file and line) when there is one.
/// </summary>
public sealed class NvrtcException : Exception
{
    /// <summary>A failure that is not an nvrtcResult (library missing, bad use).</summary>
    public NvrtcException(string message) : base(message)
    {
        ErrorName = "";
        Call = "";
    }

    /// <summary><paramref name="call"/> returned <paramref name="code"/> (named <paramref name="errorName"/>); <paramref name="log"/> is the program log.</summary>
    public NvrtcException(int code, string errorName, string call, string? log)
        : base($"{call} failed with {errorName} ({code})" + (string.IsNullOrWhiteSpace(log) ? "" : $":\n{log}"))
    {
        ErrorCode = code;
        ErrorName = errorName;
        Call = call;
        Log = log;
    }

    /// <summary>The raw nvrtcResult (0 for failures that are not NVRTC codes).</summary>
    public int ErrorCode { get; }

    /// <summary>NVRTC's name for the result, e.g. NVRTC_ERROR_COMPILATION.</summary>
    public string ErrorName { get; }

    /// <summary>The NVRTC function that failed.</summary>
    public string Call { get; }

    /// <summary>The program log (compiler diagnostics), if any.</summary>
    public string? Log { get; }
}
