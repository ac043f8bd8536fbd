using Spectre.Console;

namespace Engine.Cli.Training;

/// <summary>An error the command reports as one line (<c>engine CMD: message</c>) with exit code 1.</summary>
public sealed class CliException(string message, Exception? inner = null) : Exception(message, inner);

/// <summary>
/// Where a command writes: <see cref="Out"/> for results, <see cref="Error"/> for errors, and live
/// progress bars (Spectre.Console) when <see cref="Interactive"/>, plain lines otherwise (output
/// redirected to a file or a pipe, or a test's writer).
/// </summary>
public sealed class CliConsole
{
    /// <summary>A console writing to <paramref name="output"/> and <paramref name="error"/>.</summary>
    public CliConsole(TextWriter output, TextWriter error, bool interactive)
    {
        Out = output;
        Error = error;
        Interactive = interactive;
        Ansi = AnsiConsole.Create(new AnsiConsoleSettings
        {
            Out = new AnsiConsoleOutput(output),
            Ansi = interactive ? AnsiSupport.Detect : AnsiSupport.No,
            ColorSystem = interactive ? ColorSystemSupport.Detect : ColorSystemSupport.NoColors,
            Interactive = interactive ? InteractionSupport.Yes : InteractionSupport.No,
        });
        if (!interactive) Ansi.Profile.Width = 100; // files and pipes: wide enough for the tables, no terminal to ask
    }

    /// <summary>The process's console: interactive unless stdout is redirected.</summary>
    public static CliConsole ForProcess(TextWriter output, TextWriter error)
        => new(output, error, ReferenceEquals(output, Console.Out) && !Console.IsOutputRedirected && AnsiConsole.Profile.Capabilities.Interactive);

    /// <summary>Results.</summary>
    public TextWriter Out { get; }

    /// <summary>Errors.</summary>
    public TextWriter Error { get; }

    /// <summary>Whether live progress bars are drawn.</summary>
    public bool Interactive { get; }

    /// <summary>Spectre.Console over <see cref="Out"/> (tables; progress when interactive).</summary>
    public IAnsiConsole Ansi { get; }

    /// <summary>
    /// Runs <paramref name="body"/> with a progress handle over <paramref name="total"/> steps titled
    /// <paramref name="title"/>: a live bar when interactive; otherwise a plain line at each quarter.
    /// </summary>
    public T WithProgress<T>(string title, int total, Func<IProgressHandle, T> body)
    {
        if (!Interactive) return body(new PlainProgress(Out, title, total));
        T result = default!;
        Ansi.Progress()
            .AutoClear(false)
            .Columns(new TaskDescriptionColumn { Alignment = Justify.Left }, new ProgressBarColumn(), new PercentageColumn(), new RemainingTimeColumn())
            .Start(ctx =>
            {
                var task = ctx.AddTask(Markup.Escape(title), maxValue: Math.Max(total, 1));
                result = body(new SpectreProgress(task, title));
            });
        return result;
    }

    private sealed class SpectreProgress(ProgressTask task, string title) : IProgressHandle
    {
        public void Report(int done, string status)
        {
            task.Value = done;
            task.Description = Markup.Escape($"{title}  {status}");
        }
    }

    private sealed class PlainProgress(TextWriter output, string title, int total) : IProgressHandle
    {
        private int _nextQuarter = 1;

        public void Report(int done, string status)
        {
            if (total < 8 || done >= total) return; // the caller prints the epoch's summary line
            if (done * 4 >= _nextQuarter * total)
            {
                output.WriteLine($"{title}  {done}/{total}  {status}");
                _nextQuarter++;
            }
        }
    }
}

/// <summary>Receives a running job's progress.</summary>
public interface IProgressHandle
{
    /// <summary><paramref name="done"/> steps of the total are done; <paramref name="status"/> is e.g. "loss 0.41 acc 85.2% 1200 img/s".</summary>
    void Report(int done, string status);
}
