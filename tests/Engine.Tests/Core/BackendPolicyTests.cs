namespace Engine.Tests.Core;

public class BackendPolicyTests
{
    [Fact]
    public void UnknownBackend_IsReportedMissing_AndRequiredBackendsAreNeverSkipped()
    {
        Assert.NotNull(Backends.MissingReason("no-such-backend"));
        foreach (var backend in new[] { "opencl", "nvrtc", "cuda" })
        {
            if (Backends.IsRequired(backend)) Assert.Null(Backends.SkipReason(backend));
            else Assert.Equal(Backends.MissingReason(backend) is null, Backends.SkipReason(backend) is null);
        }
    }
}
