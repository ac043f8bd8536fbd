using System.CommandLine;
using Engine.Runtime;

namespace Engine.Cli;

/// <summary>The <c>engine</c> command.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args)
    {
        var root = new RootCommand("Engine: tensors, autograd, C# kernels and fused distillation losses.");

        var devices = new Command("devices", "List the devices Engine can run on.");
        devices.SetAction(_ =>
        {
            Console.WriteLine($"{Device.Cpu}\t{Environment.ProcessorCount} logical processors, {(System.Runtime.Intrinsics.Vector512.IsHardwareAccelerated ? "AVX-512" : System.Runtime.Intrinsics.Vector256.IsHardwareAccelerated ? "AVX2" : "scalar")}");
            Console.WriteLine("cuda\tnot available in this build (the accelerator backends arrive with the kernel compiler)");
            Console.WriteLine("opencl\tnot available in this build (the accelerator backends arrive with the kernel compiler)");
            return 0;
        });
        root.Subcommands.Add(devices);
        root.Subcommands.Add(KernelsCommand.Create());

        return root.Parse(args).Invoke();
    }
}
