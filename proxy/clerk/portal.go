package clerk

import (
	"net/url"
	"strings"
)

// SignInURL is the hosted sign-in page with redirect_url set to returnURL
// (made absolute against PublicURL if it is a path). For a development
// instance the dev browser token rides along, as Clerk's own redirects do,
// so the Account Portal recognises the browser.
func (c *Client) SignInURL(returnURL, devBrowserToken string) string {
	return c.portalURL(c.signIn, returnURL, devBrowserToken)
}

// SignUpURL is the hosted sign-up page, as SignInURL.
func (c *Client) SignUpURL(returnURL, devBrowserToken string) string {
	return c.portalURL(c.signUp, returnURL, devBrowserToken)
}

// OrganizationURL is the Account Portal's organisation page, with
// redirect_url back to returnURL, as SignInURL. Of the Account Portal's
// documented pages (sign-in, sign-up, user, organization,
// create-organization) it is the one about the visitor's organisations;
// Clerk documents none for choosing the active one outside sign-in.
func (c *Client) OrganizationURL(returnURL, devBrowserToken string) string {
	return c.portalURL(c.organization, returnURL, devBrowserToken)
}

func (c *Client) portalURL(base *url.URL, returnURL, devBrowserToken string) string {
	u := *base
	q := u.Query()
	q.Set("redirect_url", c.absolute(returnURL))
	if !c.production && devBrowserToken != "" {
		q.Set(paramDevBrowser, devBrowserToken)
	}
	u.RawQuery = q.Encode()
	return u.String()
}

// absolute makes a path absolute against PublicURL; absolute URLs pass.
func (c *Client) absolute(s string) string {
	switch {
	case s == "":
		return c.origin.String() + "/"
	case strings.HasPrefix(s, "/") && !strings.HasPrefix(s, "//"):
		return c.origin.String() + s
	}
	return s
}
