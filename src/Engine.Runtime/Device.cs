namespace Engine.Runtime;

/// <summary>The kind of processor a tensor's memory lives on.</summary>
public enum DeviceType
{
    /// <summary>Host memory, computed by the CPU-native implementations.</summary>
    Cpu,
    /// <summary>An NVIDIA GPU through the CUDA driver API.</summary>
    Cuda,
    /// <summary>Any OpenCL device (PoCL on the CPU in CI).</summary>
    OpenCL,
    /// <summary>The C# kernel emulator: GPU semantics, run on the CPU.</summary>
    Emulator,
}

/// <summary>A device: its type and its index among devices of that type.</summary>
/// <param name="Type">The device type.</param>
/// <param name="Index">Zero-based index among devices of <paramref name="Type"/>.</param>
public readonly record struct Device(DeviceType Type, int Index = 0)
{
    /// <summary>The host CPU.</summary>
    public static Device Cpu { get; } = new(DeviceType.Cpu);

    /// <summary>Parses <c>cpu</c>, <c>cuda</c>, <c>cuda:1</c>, <c>opencl:0</c>, <c>emulator</c>.</summary>
    /// <exception cref="FormatException">The text names no known device.</exception>
    public static Device Parse(string text)
    {
        ArgumentNullException.ThrowIfNull(text);
        var parts = text.Trim().ToLowerInvariant().Split(':');
        DeviceType type = parts[0] switch
        {
            "cpu" => DeviceType.Cpu,
            "cuda" => DeviceType.Cuda,
            "opencl" => DeviceType.OpenCL,
            "emulator" => DeviceType.Emulator,
            _ => throw new FormatException($"Device.Parse: unknown device '{text}'; expected cpu, cuda[:N], opencl[:N] or emulator[:N]."),
        };
        int index = 0;
        if (parts.Length > 2 || (parts.Length == 2 && (!int.TryParse(parts[1], out index) || index < 0)))
            throw new FormatException($"Device.Parse: bad device index in '{text}'; expected a non-negative integer after ':'.");
        return new Device(type, index);
    }

    /// <inheritdoc />
    public override string ToString() => Type == DeviceType.Cpu ? "cpu" : $"{Type.ToString().ToLowerInvariant()}:{Index}";
}
