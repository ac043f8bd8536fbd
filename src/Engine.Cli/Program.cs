using System.CommandLine;
using Engine.Cli.Training;
using Engine.Runtime;

namespace Engine.Cli;

/// <summary>The <c>engine</c> command.</summary>
public static class Program
{
    /// <summary>Entry point.</summary>
    public static int Main(string[] args) => Run(args, Console.Out, Console.Error, CliConsole.ForProcess);

    /// <summary>
    /// Runs the command line <paramref name="args"/> in-process, writing to <paramref name="output"/> and
    /// <paramref name="error"/> (plain lines, no live progress bars); returns the exit code. Used by tests.
    /// </summary>
    public static int Run(string[] args, TextWriter output, TextWriter error)
        => Run(args, output, error, (o, e) => new CliConsole(o, e, interactive: false));

    private static int Run(string[] args, TextWriter output, TextWriter error, Func<TextWriter, TextWriter, CliConsole> consoleFactory)
    {
        var root = new RootCommand("Engine: tensors, autograd, C# kernels and fused distillation losses.");

        var devices = new Command("devices", "List every accelerator found and, for each missing backend, why it is missing.");
        devices.SetAction(r =>
        {
            r.InvocationConfiguration.Output.Write(Accelerators.Discover().Format());
            return 0;
        });
        root.Subcommands.Add(devices);
        root.Subcommands.Add(KernelsCommand.Create());
        root.Subcommands.Add(BenchCommand.Create());
        root.Subcommands.Add(DatasetDistillCommand.Create());
        root.Subcommands.Add(LmTestbedCommand.Create());
        TrainCommands.AddTo(root, consoleFactory);

        return root.Parse(args).Invoke(new InvocationConfiguration { Output = output, Error = error });
    }
}
