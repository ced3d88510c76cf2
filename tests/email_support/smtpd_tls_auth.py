"""An SMTP server for tests/email_exceptions.rs that requires STARTTLS and
a login, writing each message it accepts into a maildir.

    smtpd_tls_auth.py PORT MAILDIR CERT KEY LOGIN PASSWORD

Runs on 127.0.0.1:PORT until its standard input closes.
"""

import ssl
import sys

from aiosmtpd.controller import Controller
from aiosmtpd.handlers import Mailbox
from aiosmtpd.smtp import AuthResult, LoginPassword


def main():
    port, maildir, cert, key, login, password = sys.argv[1:7]

    def authenticator(server, session, envelope, mechanism, auth_data):
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login == login.encode()
            and auth_data.password == password.encode()
        )
        # handled=False: aiosmtpd answers a failure with 535 itself.
        return AuthResult(success=ok, handled=False)

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    controller = Controller(
        Mailbox(maildir),
        hostname="127.0.0.1",
        port=int(port),
        tls_context=context,
        require_starttls=True,
        auth_required=True,
        authenticator=authenticator,
    )
    controller.start()
    print("ready", flush=True)
    sys.stdin.read()
    controller.stop()


if __name__ == "__main__":
    main()
