namespace Engine.Data;

/// <summary>
/// A data file is malformed: wrong magic number, truncated, extra bytes, dimensions that disagree,
/// corrupt compression. The message names the file and says what was expected and what was found.
/// </summary>
public sealed class DataFormatException : Exception
{
    /// <summary>A format error in <paramref name="path"/>: the message is "<c>path: problem</c>".</summary>
    public DataFormatException(string path, string problem, Exception? inner = null)
        : base($"{path}: {problem}", inner)
    {
        Path = path;
    }

    /// <summary>The file that is malformed.</summary>
    public string Path { get; }
}

/// <summary>A data set's files are not where they were looked for; the message says how to get them.</summary>
public sealed class DatasetNotFoundException : Exception
{
    /// <summary>Creates the exception with a message that tells how to obtain the data.</summary>
    public DatasetNotFoundException(string message) : base(message) { }
}
