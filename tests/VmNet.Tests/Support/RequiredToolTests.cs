namespace VmNet.Tests.Support;

public class RequiredToolTests
{
    [Fact]
    public void A_tool_on_the_path_is_found_with_its_full_path() =>
        Assert.Equal("/bin/sh", RequiredTool.Path("sh").Replace("/usr/bin/", "/bin/"));

    [Fact]
    public void Tools_in_sbin_are_found_even_when_sbin_is_not_on_the_path() =>
        Assert.StartsWith("/", RequiredTool.Path("blkid"));

    [Fact]
    public void A_missing_tool_is_not_found() => Assert.Null(RequiredTool.Find("vmnet-no-such-tool"));

    [Fact]
    public void The_missing_tool_message_says_how_to_install_it() =>
        Assert.Equal("xorriso missing: run scripts/install-deps.sh", RequiredTool.MissingMessage("xorriso"));
}
