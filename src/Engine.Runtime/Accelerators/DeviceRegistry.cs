namespace Engine.Runtime;

/// <summary>
/// The process-wide accelerator of each device: tensors on <c>emulator</c>, <c>opencl:N</c> or
/// <c>cuda:N</c> allocate their memory and launch their kernels through the one
/// <see cref="Accelerator"/> this registry holds for that device. Each is created on first use
/// (opening an OpenCL context or a CUDA primary context is expensive) and lives until
/// <see cref="Reset"/> or the end of the process.
/// </summary>
public static class DeviceRegistry
{
    private static readonly Dictionary<Device, Accelerator> Opened = new();
    private static readonly object Gate = new();

    /// <summary>
    /// The accelerator of <paramref name="device"/>, opened on first use.
    /// </summary>
    /// <exception cref="ArgumentException"><paramref name="device"/> is the CPU, which has no accelerator.</exception>
    /// <exception cref="NotSupportedException">The backend is missing here (the message says why, as
    /// <see cref="Accelerators.Discover"/> reports it) or has no device of that index.</exception>
    public static Accelerator Get(Device device)
    {
        lock (Gate)
        {
            if (Opened.TryGetValue(device, out var accelerator)) return accelerator;
            accelerator = Open(device);
            Opened[device] = accelerator;
            return accelerator;
        }
    }

    /// <summary>Null when <paramref name="device"/> can be opened here, otherwise why not.</summary>
    public static string? MissingReason(Device device)
    {
        lock (Gate)
            if (Opened.ContainsKey(device)) return null;
        try
        {
            return device.Type switch
            {
                DeviceType.Cpu => "the CPU has no accelerator (CPU tensors use the CPU-native implementations)",
                DeviceType.Emulator => device.Index == 0 ? null : $"there is only one emulator device (emulator:0), not {device}",
                DeviceType.OpenCL => OpenCLAccelerator.MissingReason
                    ?? (device.Index < OpenCLDevices.List().Count ? null : $"OpenCL has {OpenCLDevices.List().Count} device(s); {device} does not exist"),
                DeviceType.Cuda => CudaAccelerator.MissingReason
                    ?? (device.Index < CudaDevices.Count ? null : $"CUDA has {CudaDevices.Count} device(s); {device} does not exist"),
                _ => $"unknown device type {device.Type}",
            };
        }
        catch (Exception e) when (e is OpenCLException or CudaException or DllNotFoundException or EntryPointNotFoundException)
        {
            return e.Message;
        }
    }

    /// <summary>Disposes every opened accelerator (tensors still on them must not be used afterwards).</summary>
    public static void Reset()
    {
        lock (Gate)
        {
            foreach (var accelerator in Opened.Values) accelerator.Dispose();
            Opened.Clear();
        }
    }

    private static Accelerator Open(Device device)
    {
        if (device.Type == DeviceType.Cpu)
            throw new ArgumentException("DeviceRegistry.Get: the CPU has no accelerator; CPU tensors use the CPU-native implementations.");
        if (MissingReason(device) is { } reason)
            throw new NotSupportedException($"Device {device} is not available: the {device.Type.ToString().ToLowerInvariant()} backend is missing here ({reason}). Run `engine devices` to see what this machine has.");
        return device.Type switch
        {
            DeviceType.Emulator => new EmulatorAccelerator(),
            DeviceType.OpenCL => new OpenCLAccelerator(device.Index),
            _ => new CudaAccelerator(device.Index),
        };
    }
}
