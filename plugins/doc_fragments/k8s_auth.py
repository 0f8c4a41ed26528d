# -*- coding: utf-8 -*-
# Copyright: nodeops.kubernetes contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import absolute_import, division, print_function

__metaclass__ = type


class ModuleDocFragment(object):
    # Connection options. Names, aliases and environment variables are those
    # of kubernetes.core, so its module_defaults and AWX credentials apply.
    DOCUMENTATION = r"""
options:
  kubeconfig:
    description:
      - Path to a kubeconfig file, or the kubeconfig itself as a dictionary.
      - When neither this, I(context) nor I(host) with credentials is given, the module
        uses in-cluster configuration if it runs in a pod, else C(~/.kube/config) or E(KUBECONFIG).
      - Can be set with E(K8S_AUTH_KUBECONFIG).
      - "A dictionary is masked as a whole only while Ansible starts the module (in the log line of the
        invocation, and in the error of an invalid option). From then on, only these values in it stay masked
        wherever they appear in the output: those of the keys C(token), C(password), C(secret), C(client-key-data),
        C(client-certificate-data), C(certificate-authority-data) (public, but masked as kubernetes.core does),
        C(id-token), C(refresh-token), C(access-token) and C(client-secret) (as in an auth-provider's C(config)),
        and the C(value) of an exec plugin's C(env) entry whose C(name) contains C(token), C(secret), C(passw),
        C(key) or C(credential) (for example C(AWS_SECRET_ACCESS_KEY)), and the user and password in the URL of a
        C(server) or C(proxy-url) (C(http://user:password@proxy:3128)). The names of its clusters, contexts and
        users, its namespaces and servers, and node names and namespaces in results that contain them, stay
        readable, unless another no_log option has the same value. Exec plugin C(args) are not masked: give an
        exec plugin its secrets through C(env)."
      - A path is masked in the output, as before.
    type: raw
  context:
    description:
      - The kubeconfig context to use. Can be set with E(K8S_AUTH_CONTEXT).
    type: str
  host:
    description:
      - URL of the Kubernetes API server, for example C(https://api.example.com:6443).
      - Can be set with E(K8S_AUTH_HOST).
      - A bearer token or password sent to an C(http://) server, whether that comes from this option or from
        the kubeconfig, gets a warning, because it would cross the network in clear text.
    type: str
  api_key:
    description:
      - Bearer token for the API server. Can be set with E(K8S_AUTH_API_KEY).
    type: str
  username:
    description:
      - Username for HTTP basic authentication. Can be set with E(K8S_AUTH_USERNAME).
    type: str
  password:
    description:
      - Password for HTTP basic authentication. Can be set with E(K8S_AUTH_PASSWORD).
    type: str
  validate_certs:
    description:
      - Whether to verify the API server's TLS certificate.
      - Can be set with E(K8S_AUTH_VERIFY_SSL) or E(K8S_AUTH_VALIDATE_CERTS).
    type: bool
    aliases: [ verify_ssl ]
  ca_cert:
    description:
      - Path to a CA bundle that signed the API server's certificate.
      - Can be set with E(K8S_AUTH_SSL_CA_CERT) or E(K8S_AUTH_CA_CERT).
    type: path
    aliases: [ ssl_ca_cert ]
  client_cert:
    description:
      - Path to a client certificate. Can be set with E(K8S_AUTH_CERT_FILE) or E(K8S_AUTH_CLIENT_CERT).
    type: path
    aliases: [ cert_file ]
  client_key:
    description:
      - Path to the client certificate's key. Can be set with E(K8S_AUTH_KEY_FILE) or E(K8S_AUTH_CLIENT_KEY).
    type: path
    aliases: [ key_file ]
  proxy:
    description:
      - HTTP proxy URL to reach the API server through. Can be set with E(K8S_AUTH_PROXY).
    type: str
  no_proxy:
    description:
      - Comma-separated hosts and domains to reach without the proxy. Can be set with E(K8S_AUTH_NO_PROXY).
    type: str
  proxy_headers:
    description:
      - Headers for the proxy. Each can be set with E(K8S_AUTH_PROXY_HEADERS_<NAME>).
    type: dict
    suboptions:
      proxy_basic_auth:
        description:
          - C(user:password) for the proxy.
        type: str
      basic_auth:
        description:
          - C(user:password) for basic authentication.
        type: str
      user_agent:
        description:
          - User-Agent to send to the proxy.
        type: str
  persist_config:
    description:
      - Whether a refreshed token is written back to the kubeconfig file.
      - Can be set with E(K8S_AUTH_PERSIST_CONFIG).
    type: bool
  impersonate_user:
    description:
      - User to impersonate. Can be set with E(K8S_AUTH_IMPERSONATE_USER).
    type: str
  impersonate_groups:
    description:
      - Groups to impersonate. Can be set with E(K8S_AUTH_IMPERSONATE_GROUPS), comma-separated.
    type: list
    elements: str
notes:
  - To set the connection once for many tasks use C(module_defaults) with
    C(group/nodeops.kubernetes.k8s), which includes kubernetes.core's modules.
"""
