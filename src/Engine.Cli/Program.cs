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

        var devices = new Command("devices", "List every accelerator found and, for each missing backend, why it is missing.");
        devices.SetAction(_ =>
        {
            Console.Write(Accelerators.Discover().Format());
            return 0;
        });
        root.Subcommands.Add(devices);
        root.Subcommands.Add(KernelsCommand.Create());

        return root.Parse(args).Invoke();
    }
}
