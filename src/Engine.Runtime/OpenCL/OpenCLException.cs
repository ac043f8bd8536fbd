using Engine.Runtime.Native.OpenCL;

namespace Engine.Runtime;

/// <summary>
/// An OpenCL call failed. <see cref="ErrorName"/> is the standard name (CL_INVALID_KERNEL_ARGS, ...)
/// and <see cref="Call"/> the API function; a failed program build carries the compiler's log.
/// </summary>
public sealed class OpenCLException : Exception
{
    /// <summary>A failure that is not an OpenCL error code (library missing, no platform, bad use).</summary>
    public OpenCLException(string message) : base(message)
    {
        ErrorName = "";
        Call = "";
    }

    /// <summary>The call <paramref name="call"/> returned <paramref name="code"/>; <paramref name="detail"/> is appended (e.g. a build log).</summary>
    public OpenCLException(int code, string call, string? detail = null)
        : base($"{call} failed with {ClErrors.Name(code)} ({code})" + (string.IsNullOrEmpty(detail) ? "" : $":\n{detail}"))
    {
        ErrorCode = code;
        ErrorName = ClErrors.Name(code);
        Call = call;
        BuildLog = detail;
    }

    /// <summary>The raw cl_int error code (0 for failures that are not OpenCL codes).</summary>
    public int ErrorCode { get; }

    /// <summary>The error's standard name, e.g. CL_BUILD_PROGRAM_FAILURE; empty when not an OpenCL code.</summary>
    public string ErrorName { get; }

    /// <summary>The OpenCL function that failed, e.g. clEnqueueNDRangeKernel.</summary>
    public string Call { get; }

    /// <summary>The program build log, when the failure was a build.</summary>
    public string? BuildLog { get; }
}
