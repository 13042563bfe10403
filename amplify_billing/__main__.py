from amplify_billing.cli import main

main()
