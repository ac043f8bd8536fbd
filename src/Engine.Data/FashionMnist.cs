namespace Engine.Data;

/// <summary>
/// Fashion-MNIST (Zalando): 28×28 grayscale images of clothing in 10 classes, 60000 for training and
/// 10000 for testing, stored as four IDX files. By default read from
/// <see cref="DefaultDirectory"/>, where Debian's <c>dataset-fashion-mnist</c> package installs them.
/// </summary>
public static class FashionMnist
{
    /// <summary>Where Debian's <c>dataset-fashion-mnist</c> package installs the files.</summary>
    public const string DefaultDirectory = "/usr/share/datasets/fashion-mnist";

    /// <summary>Image height and width.</summary>
    public const int ImageSize = 28;

    /// <summary>Mean pixel value of the training images (in [0, 1]), for <see cref="Transforms.Normalize"/>.</summary>
    public const float Mean = 0.2860f;

    /// <summary>Standard deviation of the training pixels (in [0, 1]), for <see cref="Transforms.Normalize"/>.</summary>
    public const float Std = 0.3530f;

    /// <summary>The class names, indexed by label.</summary>
    public static IReadOnlyList<string> ClassNames { get; } =
        ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"];

    /// <summary>The file names (without <c>.gz</c>) of a split: images, then labels.</summary>
    public static (string Images, string Labels) FileNames(Split split) => split switch
    {
        Split.Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
        Split.Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        _ => throw new ArgumentOutOfRangeException(nameof(split), split, "expected Train or Test"),
    };

    /// <summary>
    /// Loads one split from <paramref name="directory"/> (default <see cref="DefaultDirectory"/>).
    /// Each file may be gzip-compressed (<c>NAME.gz</c>, preferred when both exist) or plain (<c>NAME</c>).
    /// </summary>
    /// <exception cref="DatasetNotFoundException">A file is missing; the message says how to get the data.</exception>
    /// <exception cref="DataFormatException">A file is malformed, images are not 28×28, the image and
    /// label counts differ, or a label is not below 10.</exception>
    public static ImageDataset Load(Split split, string? directory = null)
    {
        directory ??= DefaultDirectory;
        var (imagesName, labelsName) = FileNames(split);
        string imagesPath = Find(directory, imagesName);
        string labelsPath = Find(directory, labelsName);

        var images = Idx.ReadImages(imagesPath);
        var labels = Idx.ReadLabels(labelsPath);
        if (images.Dims[1] != ImageSize || images.Dims[2] != ImageSize)
            throw new DataFormatException(imagesPath, $"images are {images.Dims[1]}×{images.Dims[2]}; expected {ImageSize}×{ImageSize} for Fashion-MNIST.");
        if (images.Dims[0] != labels.Dims[0])
            throw new DataFormatException(imagesPath, $"count mismatch: {images.Dims[0]} images but {labels.Dims[0]} labels in {labelsPath}.");
        for (int i = 0; i < labels.Data.Length; i++)
            if (labels.Data[i] >= ClassNames.Count)
                throw new DataFormatException(labelsPath, $"label {labels.Data[i]} of sample {i} is not a class; expected 0 to {ClassNames.Count - 1}.");
        string name = $"fashion-mnist/{split.ToString().ToLowerInvariant()}";
        return new ImageDataset(name, images.Data, labels.Data, 1, ImageSize, ImageSize, ClassNames);
    }

    /// <summary>Null when all four files are in <paramref name="directory"/> (default <see cref="DefaultDirectory"/>), otherwise the <see cref="DatasetNotFoundException"/> message.</summary>
    public static string? MissingReason(string? directory = null)
    {
        directory ??= DefaultDirectory;
        var missing = AllNames().Where(n => Locate(directory, n) is null).ToList();
        return missing.Count == 0 ? null : NotFoundMessage(directory, missing);
    }

    private static IEnumerable<string> AllNames()
    {
        foreach (var split in new[] { Split.Train, Split.Test })
        {
            var (i, l) = FileNames(split);
            yield return i;
            yield return l;
        }
    }

    private static string? Locate(string directory, string name)
    {
        foreach (var candidate in new[] { name + ".gz", name })
        {
            var path = Path.Combine(directory, candidate);
            if (File.Exists(path)) return path;
        }
        return null;
    }

    private static string Find(string directory, string name)
        => Locate(directory, name) ?? throw new DatasetNotFoundException(NotFoundMessage(directory, [name]));

    private static string NotFoundMessage(string directory, IReadOnlyList<string> missing)
    {
        string where = Directory.Exists(directory) ? $"in {directory}" : $"({directory} does not exist)";
        string files = string.Join(", ", AllNames().Select(n => n + ".gz"));
        return $"Fashion-MNIST not found {where}: missing {string.Join(", ", missing.Select(m => $"{m}.gz (or {m})"))}. " +
               $"To get it: on Debian/Ubuntu run `sudo apt-get install dataset-fashion-mnist` (installs to {DefaultDirectory}), " +
               $"or pass --data DIR with a directory holding the four files {files} " +
               "(from https://github.com/zalandoresearch/fashion-mnist; uncompressed copies without .gz also work).";
    }

    /// <summary>A Fashion-MNIST split.</summary>
    public enum Split
    {
        /// <summary>The 60000 training images.</summary>
        Train,
        /// <summary>The 10000 test images.</summary>
        Test,
    }
}
