namespace Engine.Runtime;

/// <summary>
/// A CUDA driver call failed: <see cref="ErrorName"/> is the driver's name for the CUresult
/// (cuGetErrorName: CUDA_ERROR_INVALID_VALUE, CUDA_ERROR_LAUNCH_FAILED, ...) and
/// <see cref="Call"/> the function that returned it.
/// </summary>
public sealed class CudaException : Exception
{
    /// <summary>A failure that is not a CUresult (driver missing, bad use).</summary>
    public CudaException(string message) : base(message)
    {
        ErrorName = "";
        Call = "";
    }

    /// <summary><paramref name="call"/> returned <paramref name="code"/>, which the driver names <paramref name="errorName"/>.</summary>
    public CudaException(int code, string errorName, string description, string call)
        : base($"{call} failed with {errorName} ({code})" + (string.IsNullOrEmpty(description) ? "" : $": {description}"))
    {
        ErrorCode = code;
        ErrorName = errorName;
        Call = call;
    }

    /// <summary>The raw CUresult (0 for failures that are not driver codes).</summary>
    public int ErrorCode { get; }

    /// <summary>The driver's name for the error, e.g. CUDA_ERROR_OUT_OF_MEMORY.</summary>
    public string ErrorName { get; }

    /// <summary>The driver function that failed, e.g. cuLaunchKernel.</summary>
    public string Call { get; }
}
